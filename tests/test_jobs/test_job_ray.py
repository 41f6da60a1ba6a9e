"""The diarization job on Ray: actors, shards, an actor killed mid-shard, the driver killed mid-run.

Shares one session Ray cluster (2 CPUs); each test starts at most two actors.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from job_helpers import DURATIONS, assert_same_files, energy_factory, kill_after_first_shard
from ray_fixtures import ray_address  # noqa: F401  (fixture)

from diar.config import load_config
from diar.formats.rttm import read_rttm
from jobs.diarize import run_job

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference(scp: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean one-shard run in this process, without Ray."""
    out = tmp_path_factory.mktemp("ref") / "out"
    cfg = load_config(None, ["job.num_shards=1"])
    assert run_job(cfg, str(scp), str(out), local=True, diarizer_factory=energy_factory()).exit_code == 0
    return out


def test_two_actors_many_shards_equal_one_local_shard(
    ray_address: str,  # noqa: F811
    scp: Path,
    reference: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    cfg = load_config(None, ["job.num_shards=3", "job.num_actors=2"])
    report = run_job(cfg, str(scp), str(out), diarizer_factory=energy_factory())
    assert report.exit_code == 0
    assert report.summary["num_actors"] == 2
    assert report.summary["shards"] == {"total": 3, "run": 3, "reused": 0, "lost": 0}
    records = [json.loads(p.read_text()) for p in sorted((out / "shards").glob("*.done.json"))]
    assert len(records) == 3 and all(r["node_id"] for r in records)  # the node that did each shard
    assert report.summary["nodes"] == 1
    assert_same_files(out, reference)


def test_actor_killed_mid_shard_is_restarted_and_output_identical(
    ray_address: str,  # noqa: F811
    scp: Path,
    reference: Path,
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    killed: list[tuple[int, str]] = []

    def kill_first_actor() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            files = sorted(pids.iterdir())
            if files:
                pid = int(files[0].name.split(".")[0])
                killed.append((pid, files[0].read_text()))
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_actor)
    killer.start()
    out = tmp_path / "out"
    cfg = load_config(
        None, ["job.num_shards=2", "job.num_actors=1", "job.max_restarts=1", "job.max_task_retries=1"]
    )
    report = run_job(cfg, str(scp), str(out), diarizer_factory=energy_factory(delay=0.5, pid_dir=str(pids)))
    killer.join()
    assert killed, "no actor was seen working"
    pid, reco_id = killed[0]
    # the interrupted recording was processed again by the restarted actor (a new process)
    redone = [p for p in pids.iterdir() if p.read_text() == reco_id and int(p.name.split(".")[0]) != pid]
    assert redone
    assert report.exit_code == 0
    assert report.summary["recordings"] == {"total": 6, "done": 6, "failed": 0}
    assert_same_files(out, reference)


def test_actor_dead_for_good_fails_its_shard_and_a_rerun_finishes(
    ray_address: str,  # noqa: F811
    scp: Path,
    reference: Path,
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    stop = threading.Event()

    def keep_killing() -> None:
        seen: set[str] = set()
        while not stop.is_set():
            for p in sorted(pids.iterdir()):
                if p.name not in seen:
                    seen.add(p.name)
                    try:
                        os.kill(int(p.name.split(".")[0]), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            time.sleep(0.05)

    killer = threading.Thread(target=keep_killing)
    killer.start()
    out = tmp_path / "out"
    cfg = load_config(
        None, ["job.num_shards=2", "job.num_actors=1", "job.max_restarts=0", "job.max_task_retries=0"]
    )
    try:
        report = run_job(
            cfg, str(scp), str(out), diarizer_factory=energy_factory(delay=2.0, pid_dir=str(pids))
        )
    finally:
        stop.set()
        killer.join()
    assert report.exit_code == 1
    failures = (out / "failures.tsv").read_text().splitlines()[1:]
    assert len(failures) == len(DURATIONS)
    assert all(row.split("\t")[1] == "actor" for row in failures)
    # nothing was recorded as done, so the rerun processes every shard
    report = run_job(cfg, str(scp), str(out), diarizer_factory=energy_factory())
    assert report.exit_code == 0
    assert report.summary["shards"]["run"] == 2
    assert (out / "corpus.rttm").read_bytes() == (reference / "corpus.rttm").read_bytes()


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
import job_helpers
from ray import cloudpickle
cloudpickle.register_pickle_by_value(job_helpers)
from jobs.diarize import main
sys.exit(main(sys.argv[1:], job_helpers.energy_factory(delay=float({delay!r}))))
"""


def run_driver(script: Path, delay: float, args: list[str]) -> subprocess.Popen[bytes]:
    script.write_text(DRIVER.format(tests=str(TESTS), delay=delay))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen([sys.executable, str(script), *args], env=env, stderr=subprocess.PIPE)


def test_driver_killed_mid_run_then_rerun_is_byte_identical(
    ray_address: str,  # noqa: F811
    scp: Path,
    reference: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    args = ["--wav-scp", str(scp), "--out", str(out), "--address", ray_address, "--no-progress"]
    args += ["--num-shards", "6", "--num-actors", "2"]
    finished = kill_after_first_shard(run_driver(tmp_path / "slow.py", 1.5, args), out, 120)
    assert 1 <= finished < 6
    assert not (out / "corpus.rttm").exists()

    rerun = run_driver(tmp_path / "fast.py", 0.0, args)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shards"]["reused"] >= finished
    assert summary["shards"]["run"] == 6 - summary["shards"]["reused"]
    assert_same_files(out, reference)


def test_progress_inside_a_running_shard_reaches_the_driver(ray_address: str) -> None:  # noqa: F811
    from job_helpers import SlowCounter

    from jobs.actors import ActorSpec, run_ray
    from jobs.shards import Shard

    shard = Shard("shard-00000", ("a", "b", "c", "d", "e"), 5.0)
    partials: list[tuple[int, float]] = []
    outcomes = []
    spec = ActorSpec(num_cpus=1, num_gpus=0, max_restarts=0, max_task_retries=0)
    factory = functools.partial(SlowCounter, 0.6)
    run_ray(
        factory, [shard], spec, 1, outcomes.append, lambda n, s: partials.append((n, s)), poll_seconds=0.2
    )
    assert [o.result for o in outcomes] == [["a", "b", "c", "d", "e"]]
    assert any(0 < n < 5 for n, _ in partials), partials


def test_actors_the_cluster_cannot_place_yet_hold_no_shard(ray_address: str) -> None:  # noqa: F811
    """Three actors asked for on two CPUs: the ready ones do every shard while the third waits for
    a node (the demand an autoscaler adds one for), and it is withdrawn once no shard is left."""
    from job_helpers import SlowCounter

    from jobs.actors import ActorSpec, run_ray
    from jobs.shards import Shard

    shards = [Shard(f"shard-{i:05d}", (f"r{i}",), 1.0) for i in range(4)]
    spec = ActorSpec(num_cpus=1, num_gpus=0, max_restarts=0, max_task_retries=0)
    outcomes: list = []
    stats: list = []

    def run() -> None:
        factory = functools.partial(SlowCounter, 0.5)
        stats.append(run_ray(factory, shards, spec, 3, outcomes.append, poll_seconds=0.2))

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout=180)  # a shard given to the actor that cannot start would never finish
    assert not runner.is_alive(), f"shards still waiting: {[o.shard.shard_id for o in outcomes]} done"
    assert sorted(o.result[0] for o in outcomes) == ["r0", "r1", "r2", "r3"]
    assert stats[0].requested == 3 and 1 <= stats[0].ready <= 2 and stats[0].first_ready_seconds > 0


@pytest.mark.parametrize(
    ("problem", "error"), [("crash_ids", "WorkerCrash"), ("hang_ids", "RecordingTimeout")]
)
def test_a_recording_that_kills_or_hangs_its_actor_fails_alone(
    ray_address: str,  # noqa: F811
    scp: Path,
    reference: Path,
    tmp_path: Path,
    problem: str,
    error: str,
) -> None:
    out = tmp_path / "out"
    sets = ["job.num_shards=1", "job.num_actors=1", "job.max_failures=1", "job.recording_timeout=3"]
    factory = energy_factory(**{problem: ("rec-c",)})
    report = run_job(load_config(None, sets), str(scp), str(out), diarizer_factory=factory)
    assert report.exit_code == 0
    rows = (out / "failures.tsv").read_text().splitlines()[1:]
    assert len(rows) == 1 and rows[0].startswith(f"rec-c\tactor\t{error}\t")
    expected = [
        line for line in (reference / "corpus.rttm").read_text().splitlines() if " rec-c " not in line
    ]
    assert (out / "corpus.rttm").read_text().splitlines() == expected
    assert not list((out / "shards").glob("*.inflight.json"))


def test_wavlm_sd_config_runs_as_the_ray_job(
    ray_address: str,  # noqa: F811
    scp: Path,
    tmp_path: Path,
) -> None:
    """configs/wavlm-sd.yaml on Ray actors, with a tiny random checkpoint in place of the hub id:
    the actors spool each recording to disk and give what one local process gives."""
    pytest.importorskip("transformers")
    from helpers import save_tiny_wavlm

    model = save_tiny_wavlm(tmp_path / "wavlm", do_normalize=False, seed=3)
    sets = [
        f"frame_model.model={model}",
        "frame_model.device=cpu",
        "embedding.device=cpu",
        "job.num_shards=2",
    ]
    cfg = load_config(TESTS.parent / "configs" / "wavlm-sd.yaml", sets)
    local = run_job(cfg, str(scp), str(tmp_path / "local"), local=True)
    assert local.exit_code == 0
    report = run_job(
        load_config(TESTS.parent / "configs" / "wavlm-sd.yaml", [*sets, "job.num_actors=1"]),
        str(scp),
        str(tmp_path / "ray"),
    )
    assert report.exit_code == 0 and report.summary["recordings"]["failed"] == 0
    turns = read_rttm(tmp_path / "ray" / "corpus.rttm")
    assert sorted(turns) == sorted(DURATIONS)  # every recording has speech from the model
    assert (tmp_path / "ray" / "corpus.rttm").read_bytes() == (
        tmp_path / "local" / "corpus.rttm"
    ).read_bytes()
