"""The job's stage split (``job.stages``) on a Ray node with a declared GPU, models on the CPU.

The session Ray of the other job tests has no GPU, so these tests run the job in a driver
process of their own (``stages_driver.py``) that starts Ray with ``num_cpus=2, num_gpus=1``.
The reference is the single-actor path (in this process, ``--local``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from job_helpers import FailsOn, assert_same_files, kill_after_first_shard, make_corpus
from ray_fixtures import ray_head, read_log

import jobs.stages
from diar.config import ConfigError, load_config
from jobs.diarize import run_job
from jobs.stages import MODEL_STAGES, STAGES, split_resources, use_split

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1]
DATA = TESTS / "data"
ROOT = TESTS.parent

#: tiny random-weight segmentation-3.0 and CAM++ (tests/data), forced to the CPU
MODELS = [
    f"frame_model.model={DATA / 'segmentation' / 'tiny_pyannet.ckpt'}",
    "frame_model.device=cpu",
    f"embedding.model_dir={DATA / 'campplus' / 'tiny_campplus.pt'}",
    "embedding.device=cpu",
    "job.num_shards=2",
    "job.max_failures=1",
]


@pytest.fixture(scope="module")
def scp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    bad = folder / "bad.wav"
    bad.write_bytes(b"not audio at all")
    # rec-e is shorter than one window (7 s): its window is forwarded apart from the others'
    durations = {"rec-a": 9.0, "rec-b": 14.0, "rec-c": 7.5, "rec-d": 12.0, "rec-e": 3.0}
    return make_corpus(folder, durations, extra_lines=(f"rec-bad {bad}",))


@pytest.fixture(scope="module")
def reference(scp: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-actor path, in this process."""
    out = tmp_path_factory.mktemp("ref") / "out"
    report = run_job(load_config(None, [*MODELS, "job.stages=single"]), str(scp), str(out), local=True)
    assert report.exit_code == 0
    return out


#: rec-c (7.5 s) fails in the model stage in :func:`test_stage_split_on_a_gpu_node`
FAILING = round(7.5 * 16000)


@pytest.fixture(scope="module")
def reference_failing(scp: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-actor path with a segmentation model that fails rec-c."""
    out = tmp_path_factory.mktemp("ref-failing") / "out"
    cfg = load_config(None, [*MODELS, "job.stages=single", "job.max_failures=2"])
    assert run_job(cfg, str(scp), str(out), local=True, diarizer_factory=FailsOn(FAILING)).exit_code == 0
    return out


def driver_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def driver_command(scp: Path, runs: list[dict[str, object]], address: str | None = None) -> list[str]:
    return [
        sys.executable,
        str(TESTS / "stages_driver.py"),
        str(scp),
        json.dumps(runs),
        *([address] if address else []),
    ]


def drive(scp: Path, runs: list[dict[str, object]], address: str | None = None) -> list[dict[str, int]]:
    env = driver_env()
    done = subprocess.run(
        driver_command(scp, runs, address),
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_stage_split_on_a_gpu_node(
    scp: Path, reference: Path, reference_failing: Path, tmp_path: Path
) -> None:
    split, killed, failing = tmp_path / "split", tmp_path / "killed", tmp_path / "failing"
    marker = tmp_path / "embed-actor-died"
    reports = drive(
        scp,
        [
            {"out": str(split), "set": MODELS},  # job.stages=auto: split on a cluster with GPUs
            {"out": str(split), "set": MODELS},  # resume: nothing to do
            {"out": str(killed), "set": [*MODELS, "job.stages=split"], "dies_once": str(marker)},
            {
                "out": str(failing),
                "set": [*MODELS, "job.max_failures=2", "job.model_batch=4"],
                "fails_on": FAILING,
            },
        ],
    )
    assert reports == [
        {"exit_code": 0, "shards_run": 2},
        {"exit_code": 0, "shards_run": 0},
        {"exit_code": 0, "shards_run": 2},
        {"exit_code": 0, "shards_run": 2},
    ]
    # the model stages ran on actors holding the GPU, the others on CPU workers
    for done in sorted((split / "shards").glob("*.done.json")):
        gpus = json.loads(done.read_text())["stage_gpus"]
        assert sorted(gpus) == sorted(STAGES)
        for stage in STAGES:
            assert bool(gpus[stage]) == (stage in MODEL_STAGES), (stage, gpus)
    # the embedding actor died once mid-run (SIGKILL), was restarted, and its batch redone
    assert marker.exists()
    for out in (split, killed):
        assert_same_files(out, reference)
    assert (reference / "corpus.rttm").read_text().count("SPEAKER") >= 4
    # the recording that cannot be read is a failure row of stage read; the others are done
    rows = (split / "failures.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[:2] for r in rows] == [["rec-bad", "read"]]
    # a recording the model fails (in a batch with others) is a diarize row; the others finish
    rows = (failing / "failures.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[:2] for r in rows] == [["rec-bad", "read"], ["rec-c", "diarize"]]
    assert_same_files(failing, reference_failing, ("corpus.rttm", "failures.tsv"))
    assert (failing / "corpus.rttm").read_text().count("rec-a") >= 1


@pytest.mark.parametrize(("how", "error"), [("kill", "WorkerCrash"), ("hang", "RecordingTimeout")])
def test_a_recording_that_kills_or_hangs_its_stage_fails_alone(
    scp: Path, reference: Path, tmp_path: Path, how: str, error: str
) -> None:
    """As in the single-actor path: the batch's crash journal names the recording that kills
    (or hangs) the segmentation actor, in a batch with others; it alone is a failure row."""
    out = tmp_path / "out"
    sets = [*MODELS, "job.stages=split", "job.max_failures=2", "job.recording_timeout=10"]
    run = {"out": str(out), "set": sets, "fails_on": FAILING, "how": how}
    assert drive(scp, [run]) == [{"exit_code": 0, "shards_run": 2}]
    rows = (out / "failures.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[:3] for r in rows] == [
        ["rec-bad", "read", "AudioDecodeError"],
        ["rec-c", "actor", error],
    ]
    expected = [
        line for line in (reference / "corpus.rttm").read_text().splitlines() if " rec-c " not in line
    ]
    assert (out / "corpus.rttm").read_text().splitlines() == expected
    assert not list((out / "shards").glob("*.inflight.json"))


def test_stages_config() -> None:
    cluster_gpu, cluster_cpu = {"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0}
    assert use_split(load_config(None, []), cluster_gpu)  # auto, mode frame
    assert not use_split(load_config(None, []), cluster_cpu)
    assert not use_split(load_config(None, ["job.stages=single"]), cluster_gpu)
    assert use_split(load_config(None, ["job.stages=split"]), cluster_cpu)
    assert not use_split(load_config(None, ["mode=cluster"]), cluster_gpu)
    with pytest.raises(Exception, match="mode frame only"):
        use_split(load_config(None, ["mode=cluster", "job.stages=split"]), cluster_gpu)
    with pytest.raises(ConfigError, match=r"job\.stages"):
        load_config(None, ["job.stages=gpu"])
    with pytest.raises(ConfigError, match=r"job\.model_batch"):
        load_config(None, ["job.model_batch=0"])


def test_split_resources_fit_a_cluster_that_cannot_grow(monkeypatch: pytest.MonkeyPatch) -> None:
    job = load_config(None, []).job  # 1 CPU per worker, 0.5 GPU per model actor
    monkeypatch.setattr(jobs.stages, "cluster_autoscales", lambda: False)
    assert split_resources(job, {"CPU": 16.0, "GPU": 2.0}) == (1.0, 1.0, 0.5)
    # one worker per stage (read, 2 CPU actors, 2 model actors) asks for 5 CPUs: shares of 2
    assert split_resources(job, {"CPU": 2.0, "GPU": 1.0}) == pytest.approx((0.4, 0.4, 0.5))
    assert split_resources(job, {"CPU": 8.0}) == (1.0, 1.0, 0.0)  # no GPU: CPU model actors
    # an autoscaling cluster gets the demand as configured, GPUs included
    monkeypatch.setattr(jobs.stages, "cluster_autoscales", lambda: True)
    assert split_resources(job, {"CPU": 0.0}) == (1.0, 1.0, 0.5)


@contextmanager
def gpu_head() -> Iterator[str]:
    """A Ray head of 2 CPUs and a declared GPU that outlives its drivers; yield its address."""

    def ready(temp: Path) -> bool:
        return "Ray runtime started" in read_log(temp / "head.log")

    def not_ready(head_log: str, temp: Path) -> None:
        pytest.fail(f"the Ray head did not start: {head_log}")

    with ray_head(lambda address, temp: ["--num-cpus=2", "--num-gpus=1"], driver_env(), ready, not_ready) as (
        address,
        _,
    ):
        yield address


def test_driver_killed_mid_split_then_rerun_is_byte_identical(
    scp: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    # a shard per recording, passed on one at a time to one slow finishing worker: shards end apart
    sets = [*MODELS, "job.num_shards=6", "job.stages=split", "job.model_batch=1", "job.stage_workers=1"]
    with gpu_head() as address:
        driver = subprocess.Popen(
            driver_command(scp, [{"out": str(out), "set": sets, "slow_finish": 3.0}], address),
            env=driver_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        finished = kill_after_first_shard(driver, out, 300)
        assert 1 <= finished < 6
        assert not (out / "corpus.rttm").exists()
        # a new driver on the same cluster runs only the shards without a done record
        assert drive(scp, [{"out": str(out), "set": sets}], address) == [
            {"exit_code": 0, "shards_run": 6 - finished}
        ]
    assert_same_files(out, reference)
