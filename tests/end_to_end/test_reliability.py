"""Issue 7 end to end: bad input, failure budget and security through the real job.

Every run here uses the real offline default pipeline (configs/default.yaml, mode
cluster: silero VAD, GE2E, clustering) on real speech cut from the bundled sample
(LibriSpeech, CC BY 4.0, see diar/data/sample/ATTRIBUTION.md). One wav.scp mixes
good recordings with every kind of bad one; the job must diarize the good ones,
give each bad one exactly one row in failures.tsv and keep its counts right, in
``python -m jobs.diarize --local``, on Ray actors, and in ``diar diarize``.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import serve_folder
from helpers import REPO, free_port, never_built
from job_helpers import assert_same_files, read_failures_tsv
from ray_fixtures import ray_address  # noqa: F401  (fixture)

from diar.config import load_config
from diar.formats.parquet import read_parquet
from diar.formats.rttm import read_rttm
from diar.manifests import write_profiles
from diar.pipelines.base import Diarizer, RecordingInput, StepHook, no_hook
from diar.types import Annotation, Turn
from jobs.diarize import main, run_job

DEFAULT_CONFIG = REPO / "configs" / "default.yaml"
SAMPLE = REPO / "diar" / "data" / "sample" / "sim01_2spk.flac"
SR = 16000

#: Recordings that must be diarized with at least one turn.
SPEECH = ("good-a", "rate-8k", "rate-44k", "stereo", "short", "réunion-會議", "../../x", "url-good")
#: Recordings that are valid but hold no speech: done, with no turn and no failure row.
NO_SPEECH = ("silent", "tiny")
#: Recordings that must fail, each with exactly one row in failures.tsv.
BAD = (
    "missing",
    "zero-byte",
    "truncated",
    "corrupt",
    "text-as-wav",
    "empty",
    "nan",
    "url-404",
    "url-500",
    "url-refused",
    "directory",
)


@dataclass(frozen=True)
class Bad:
    """A recording that must fail: its wav.scp source, error type and what the message must say."""

    source: str
    error_type: str
    problem: str


@dataclass
class Matrix:
    """The mixed corpus: wav.scp, the folder it lives in, and what each recording must give."""

    root: Path
    scp: Path
    seconds: dict[str, float] = field(default_factory=dict)  # good recording -> duration
    bad: dict[str, Bad] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.seconds) + len(self.bad)


def config_path() -> str:
    if not DEFAULT_CONFIG.is_file():
        pytest.fail(f"{DEFAULT_CONFIG} is missing: the offline default config is part of the product")
    return str(DEFAULT_CONFIG)


def job_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    return env


def files_outside(root: Path, out: Path) -> set[Path]:
    """Every path under ``root`` except those inside ``out``."""
    return {p for p in root.rglob("*") if out not in p.parents and p != out}


def speech_overlap(a: Annotation, b: Annotation) -> float:
    """Intersection over union of the speech (any speaker) of two annotations, on 10 ms frames."""

    def frames(ann: Annotation) -> set[int]:
        return {f for t in ann.turns for f in range(round(t.start * 100), round(t.end * 100))}

    fa, fb = frames(a), frames(b)
    return len(fa & fb) / max(1, len(fa | fb))


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    """Good recordings cut from the bundled sample, every bad case beside them, one wav.scp."""
    root = tmp_path_factory.mktemp("reliability")
    audio, rate = sf.read(SAMPLE, dtype="float32")
    assert rate == SR
    a = audio[: 8 * SR]  # shape: (128000,), two speakers
    b = audio[13 * SR : 21 * SR]  # shape: (128000,)
    c = root / "corpus"
    www = root / "www"
    c.mkdir()
    www.mkdir()
    sf.write(c / "a.wav", a, SR, subtype="PCM_16")
    sf.write(www / "a.wav", a, SR, subtype="PCM_16")
    sf.write(c / "會議.flac", b, SR)
    sf.write(c / "a-8k.wav", soxr.resample(a, SR, 8000), 8000, subtype="PCM_16")
    sf.write(c / "b-44k.wav", soxr.resample(b, SR, 44100), 44100, subtype="PCM_16")
    sf.write(c / "stereo.wav", np.stack([a, a], axis=1), SR, subtype="PCM_16")
    sf.write(c / "short.wav", audio[round(1.2 * SR) : round(2.2 * SR)], SR, subtype="PCM_16")  # 1 s < window
    sf.write(c / "tiny.wav", audio[round(1.5 * SR) : round(1.5 * SR) + 300], SR, subtype="PCM_16")
    sf.write(c / "silent.wav", np.zeros(3 * SR, dtype=np.float32), SR, subtype="PCM_16")
    sf.write(c / "empty.wav", np.zeros(0, dtype=np.float32), SR, subtype="PCM_16")
    nan = a.copy()
    nan[20000] = np.nan
    sf.write(c / "nan.wav", nan, SR, subtype="FLOAT")
    (c / "zero.wav").write_bytes(b"")
    (c / "text.wav").write_text("this is a text file, not audio\n", encoding="utf-8")
    whole = (c / "a.wav").read_bytes()
    (c / "truncated.wav").write_bytes(whole[: len(whole) // 2])
    flac = bytearray((c / "會議.flac").read_bytes())
    flac[len(flac) // 3 : len(flac) // 3 + 4000] = bytes(4000)
    (c / "corrupt.flac").write_bytes(bytes(flac))

    with serve_folder(www) as base:
        m = Matrix(root, c / "wav.scp")
        good = {
            "good-a": (c / "a.wav", 8.0),
            "rate-8k": (c / "a-8k.wav", 8.0),
            "rate-44k": (c / "b-44k.wav", 8.0),
            "stereo": (c / "stereo.wav", 8.0),
            "short": (c / "short.wav", 1.0),
            "tiny": (c / "tiny.wav", 300 / SR),
            "silent": (c / "silent.wav", 3.0),
            "réunion-會議": (c / "會議.flac", 8.0),
            "../../x": (c / "a.wav", 8.0),
            "url-good": (f"{base}/a.wav", 8.0),
        }
        m.bad = {
            "missing": Bad(str(c / "nope.wav"), "AudioNotFoundError", "no such file"),
            "zero-byte": Bad(str(c / "zero.wav"), "AudioDecodeError", "zero-byte"),
            "truncated": Bad(str(c / "truncated.wav"), "AudioDecodeError", "truncated"),
            "corrupt": Bad(str(c / "corrupt.flac"), "AudioDecodeError", "corrupt"),
            "text-as-wav": Bad(str(c / "text.wav"), "AudioDecodeError", "not decodable"),
            "empty": Bad(str(c / "empty.wav"), "EmptyAudioError", "0 samples"),
            "nan": Bad(str(c / "nan.wav"), "InvalidSamplesError", "NaN"),
            "url-404": Bad(f"{base}/lost.wav", "AudioNotFoundError", "not found"),
            "url-500": Bad(f"{base}/status/500/a.wav", "AudioNotFoundError", "HTTP 500"),
            "url-refused": Bad(f"http://127.0.0.1:{free_port()}/a.wav", "AudioNotFoundError", "cannot reach"),
            "directory": Bad(str(www), "AudioNotFoundError", "is a directory"),
        }
        m.seconds = {k: s for k, (_, s) in good.items()}
        assert sorted(m.bad) == sorted(BAD) and sorted(m.seconds) == sorted(SPEECH + NO_SPEECH)
        good_lines = [f"{k} {src}" for k, (src, _) in good.items()]
        bad_lines = [f"{k} {b.source}" for k, b in m.bad.items()]
        # good and bad interleaved, as a real corpus would have them
        lines = [line for pair in itertools.zip_longest(good_lines, bad_lines) for line in pair if line]
        m.scp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        yield m


def check_outputs(out: Path, m: Matrix, allowed: int) -> dict[str, Annotation]:
    """Everything issue 7 asks of OUT after a run over the matrix; returns the corpus annotations."""
    # one failure row per bad recording, naming the file and the problem
    rows = read_failures_tsv((out / "failures.tsv").read_text(encoding="utf-8"))
    assert sorted(r.reco_id for r in rows) == sorted(m.bad)
    for row in rows:
        bad = m.bad[row.reco_id]
        assert (row.stage, row.error_type) == ("read", bad.error_type), row
        assert bad.source in row.message and bad.problem in row.message, row

    # every good recording with speech diarized; sorted, channel 1, nothing duplicated
    text = (out / "corpus.rttm").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) == len(set(lines))
    fields = [line.split() for line in lines]
    assert all(f[0] == "SPEAKER" and f[2] == "1" and len(f) == 10 for f in fields)
    keys = [(f[1], float(f[3])) for f in fields]
    assert keys == sorted(keys)
    corpus = read_rttm(out / "corpus.rttm")
    assert sorted(corpus) == sorted(SPEECH)
    for reco_id, ann in corpus.items():
        assert len(ann.turns) >= 1
        assert all(0 <= t.start < t.end <= m.seconds[reco_id] + 0.01 for t in ann.turns), reco_id
    assert sorted(read_parquet(out / "corpus.parquet")) == sorted(SPEECH)
    assert "SPEAKER réunion-會議 1 " in text  # the UTF-8 id as it is, not escaped

    # mixed down, resampled, fetched over HTTP, odd ids: the same speech as the plain file
    for same in ("stereo", "url-good", "../../x"):
        assert [(t.start, t.end, t.speaker) for t in corpus[same].turns] == [
            (t.start, t.end, t.speaker) for t in corpus["good-a"].turns
        ], same
    # the frame model's hard decisions move by a few frames (here and there a short pause more)
    # on audio that went through a resampler twice; 8 kHz audio has lost the upper half band
    assert speech_overlap(corpus["rate-44k"], corpus["réunion-會議"]) > 0.8
    assert speech_overlap(corpus["rate-8k"], corpus["good-a"]) > 0.8

    # every recording is in exactly one shard's done record, as done or as a failure
    done: dict[str, float] = {}
    failed: list[str] = []
    for record_file in sorted((out / "shards").glob("*.done.json")):
        record = json.loads(record_file.read_text(encoding="utf-8"))
        assert not set(record["done"]) & set(done)
        done.update(record["done"])
        failed += [f["reco_id"] for f in record["failures"]]
    assert sorted(done) == sorted(m.seconds) and sorted(failed) == sorted(m.bad)
    for reco_id, seconds in m.seconds.items():  # resampling and mix-down keep the duration
        assert done[reco_id] == pytest.approx(seconds, abs=2e-3), reco_id

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["recordings"] == {"total": m.total, "done": len(m.seconds), "failed": len(m.bad)}
    assert summary["audio_hours"] == pytest.approx(sum(m.seconds.values()) / 3600, abs=1e-5)
    assert summary["failure_budget"]["allowed"] == allowed
    assert summary["status"] == ("ok" if len(m.bad) <= allowed else "over_budget")
    return corpus


@pytest.fixture(scope="module")
def local_run(matrix: Matrix) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``python -m jobs.diarize --local`` over the matrix, within a failure budget of 8 (a count)."""
    out = matrix.root / "runs" / "deep" / "out"
    out.parent.mkdir(parents=True)
    before = files_outside(matrix.root, out)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.diarize",
            "--config",
            config_path(),
            "--wav-scp",
            str(matrix.scp),
            "--out",
            str(out),
            "--local",
            "--no-progress",
            "--num-shards",
            "3",
            "--set",
            f"job.max_failures={len(matrix.bad)}",
        ],
        cwd=REPO,
        env=job_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    # nothing written outside OUT (the id ../../x included)
    assert files_outside(matrix.root, out) == before
    return out, proc


def test_job_diarizes_every_good_recording_and_lists_every_bad_one(
    local_run: tuple[Path, subprocess.CompletedProcess[str]], matrix: Matrix
) -> None:
    out, proc = local_run
    assert proc.returncode == 0, proc.stderr
    assert f"{len(matrix.seconds)} recordings diarized, {len(matrix.bad)} failed" in proc.stdout
    assert "failures within budget" in proc.stderr
    check_outputs(out, matrix, allowed=len(matrix.bad))
    assert sorted(p.name for p in (out / "shards").iterdir()) == sorted(
        f"shard-0000{i}.{ext}"
        for i in range(3)
        for ext in ("done.json", "parquet", "rttm", "traces.ark", "traces.parquet")
    )


@pytest.mark.parametrize("reco_id", BAD)
def test_each_bad_recording_is_one_clear_row(
    reco_id: str, local_run: tuple[Path, subprocess.CompletedProcess[str]], matrix: Matrix
) -> None:
    out, _ = local_run
    bad = matrix.bad[reco_id]
    rows = [
        r
        for r in read_failures_tsv((out / "failures.tsv").read_text(encoding="utf-8"))
        if r.reco_id == reco_id
    ]
    assert len(rows) == 1
    assert (rows[0].stage, rows[0].error_type) == ("read", bad.error_type)
    assert bad.source in rows[0].message and bad.problem in rows[0].message, rows[0].message
    assert reco_id not in read_rttm(out / "corpus.rttm")


@pytest.mark.parametrize("reco_id", SPEECH + NO_SPEECH)
def test_each_good_recording_is_diarized(
    reco_id: str, local_run: tuple[Path, subprocess.CompletedProcess[str]], matrix: Matrix
) -> None:
    out, _ = local_run
    failures = read_failures_tsv((out / "failures.tsv").read_text(encoding="utf-8"))
    assert reco_id not in {r.reco_id for r in failures}
    done = {}
    for record in (out / "shards").glob("*.done.json"):
        done.update(json.loads(record.read_text(encoding="utf-8"))["done"])
    assert done[reco_id] == pytest.approx(matrix.seconds[reco_id], abs=2e-3)  # resampled, mixed down
    turns = read_rttm(out / "corpus.rttm").get(reco_id, Annotation(reco_id, ())).turns
    if reco_id in SPEECH:
        assert len(turns) >= 1 and all(t.end <= matrix.seconds[reco_id] + 0.01 for t in turns)
    else:
        assert turns == ()  # no speech: a valid, empty result


def job_args(matrix_or_scp: Matrix | Path, out: Path, *extra: str) -> list[str]:
    scp = matrix_or_scp.scp if isinstance(matrix_or_scp, Matrix) else matrix_or_scp
    return [
        "--config",
        config_path(),
        "--wav-scp",
        str(scp),
        "--out",
        str(out),
        "--local",
        "--no-progress",
        *extra,
    ]


def test_failure_budget_as_count_and_fraction(
    matrix: Matrix,
    local_run: tuple[Path, subprocess.CompletedProcess[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reference, _ = local_run
    n_bad = len(matrix.bad)
    # over budget (a count one short): the outputs are still written, one line says why
    out = tmp_path / "over"
    code = main(job_args(matrix, out, "--num-shards", "3", "--set", f"job.max_failures={n_bad - 1}"))
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"{n_bad} of {matrix.total} recordings failed" in err[0] and "failures.tsv" in err[0]
    check_outputs(out, matrix, allowed=n_bad - 1)
    assert_same_files(out, reference)

    # the budget is judged again on a rerun (no model work: every shard is done)
    share = n_bad / matrix.total
    above, below = math.ceil(share * 100) / 100, math.floor(share * 100) / 100 - 0.01
    cases = [  # max_failures, allowed, exit code
        (f"{n_bad}", n_bad, 0),
        (f"{above:.2f}", n_bad, 0),  # a fraction of the recordings, just enough
        (f"{below:.2f}", math.floor(below * matrix.total), 1),  # just too little
        ("0", 0, 1),
    ]
    for value, allowed, expected in cases:
        rerun = tmp_path / f"budget-{value}"
        shutil.copytree(out, rerun)
        code = main(
            job_args(matrix, rerun, "--num-shards", "3", "--set", f"job.max_failures={value}"), never_built
        )
        assert code == expected, value
        reason = capsys.readouterr().err
        assert ("more than job.max_failures" in reason) == (expected != 0), reason
        check_outputs(rerun, matrix, allowed=allowed)
        assert (rerun / "corpus.rttm").read_bytes() == (reference / "corpus.rttm").read_bytes()


@pytest.mark.parametrize(
    "case",
    ["malformed line", "duplicate id", "pipe refused", "empty", "profile id not in wav.scp", "ark offset"],
)
def test_manifest_problems_stop_the_job_before_any_work(
    case: str, matrix: Matrix, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = matrix.root / "corpus" / "a.wav"
    scp = tmp_path / "wav.scp"
    lines = [f"one {good}", f"two {good}", f"three {good}"]
    extra: list[str] = []
    if case == "malformed line":
        lines[1] = f"two {good} trailing-field"
        where, what = f"{scp}:2", "expected 2 fields"
    elif case == "duplicate id":
        lines.append(f"one {good}")
        where, what = f"{scp}:4", "duplicate id 'one'"
    elif case == "empty":
        lines = []
        where, what = f"{scp}: ", "no recordings"
    elif case == "pipe refused":
        lines[2] = f"three cat {good} |"
        where, what = f"{scp}:3", "pipe command"
    else:
        profiles = tmp_path / "profiles"
        profile_scp = write_profiles(
            profiles, {r: (np.eye(2, 4, dtype=np.float32), None) for r in ("one", "two")}
        )
        text = profile_scp.read_text(encoding="utf-8").splitlines()
        if case == "profile id not in wav.scp":
            text[1] = text[1].replace("two ", "ghost ", 1)
            where, what = f"{profile_scp}:2", "'ghost' is not in"
        else:
            text[1] = text[1].rsplit(":", 1)[0] + ":3"  # inside the first matrix, not at one
            where, what = f"{profile_scp}:2", "cannot read ark entry"
        profile_scp.write_text("\n".join(text) + "\n", encoding="utf-8")
        extra = ["--profile-scp", str(profile_scp)]
    scp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    code = main(job_args(scp, out, *extra), never_built)
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and where in err[0] and what in err[0], err
    assert not out.exists() or list(out.rglob("*")) == []


def test_pipes_run_only_when_enabled(matrix: Matrix, local_run: tuple[Path, object], tmp_path: Path) -> None:
    reference = read_rttm(local_run[0] / "corpus.rttm")["good-a"]
    scp = tmp_path / "wav.scp"
    scp.write_text(f"piped cat {matrix.root / 'corpus' / 'a.wav'} |\n", encoding="utf-8")
    assert main(job_args(scp, tmp_path / "refused"), never_built) == 2
    assert main(job_args(scp, tmp_path / "out", "--set", "job.allow_pipes=true")) == 0
    got = read_rttm(tmp_path / "out" / "corpus.rttm")["piped"]
    assert [(t.start, t.end, t.speaker) for t in got.turns] == [
        (t.start, t.end, t.speaker) for t in reference.turns
    ]


def test_no_pickle_loading_of_checkpoints() -> None:
    """Every ``torch.load`` in diar/ and jobs/ passes ``weights_only=True``; no pickle.load anywhere."""
    offenders = []
    for path in sorted([*REPO.joinpath("diar").rglob("*.py"), *REPO.joinpath("jobs").rglob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            keywords = {k.arg: k.value for k in node.keywords}
            if name == "torch.load":
                safe = keywords.get("weights_only")
                if not (isinstance(safe, ast.Constant) and safe.value is True):
                    offenders.append(f"{where}: torch.load without weights_only=True")
            elif name in (
                "pickle.load",
                "pickle.loads",
                "cloudpickle.load",
                "cloudpickle.loads",
                "dill.load",
            ):
                offenders.append(f"{where}: {name}")
            elif name.endswith("np.load") or name.endswith("numpy.load"):
                flag = keywords.get("allow_pickle")
                if isinstance(flag, ast.Constant) and flag.value is True:
                    offenders.append(f"{where}: np.load(allow_pickle=True)")
            elif name.endswith("from_pretrained"):
                flag = keywords.get("weights_only")
                if isinstance(flag, ast.Constant) and flag.value is False:
                    offenders.append(f"{where}: from_pretrained(weights_only=False)")
    assert offenders == []


@pytest.mark.slow
def test_ray_job_gives_the_same_rows_and_turns(
    ray_address: str,  # noqa: F811
    matrix: Matrix,
    local_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """The whole matrix on two Ray actors: the same failure rows and byte-identical corpus files."""
    reference, _ = local_run
    out = matrix.root / "runs" / "ray" / "out"
    out.parent.mkdir(parents=True)
    before = files_outside(matrix.root, out)
    config = load_config(
        config_path(), ["job.num_shards=3", "job.num_actors=2", f"job.max_failures={len(matrix.bad)}"]
    )
    report = run_job(config, str(matrix.scp), str(out), progress=False)
    assert report.exit_code == 0, report.reason
    assert report.summary["num_actors"] == 2
    check_outputs(out, matrix, allowed=len(matrix.bad))
    assert_same_files(out, reference)
    assert files_outside(matrix.root, out) == before


def test_an_out_folder_that_cannot_be_made_is_a_one_line_error(
    matrix: Matrix, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scp = tmp_path / "wav.scp"
    scp.write_text(f"one {matrix.root / 'corpus' / 'a.wav'}\n", encoding="utf-8")
    out = tmp_path / "a-file"
    out.write_text("not a folder\n", encoding="utf-8")
    assert main(job_args(scp, out), never_built) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0], err


def test_diar_diarize_in_one_process_gives_the_same_per_recording_results(
    matrix: Matrix,
    local_run: tuple[Path, subprocess.CompletedProcess[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from diar.cli import main as diar_main

    reference, _ = local_run
    out = tmp_path / "out.rttm"
    before = files_outside(matrix.root, out) | files_outside(tmp_path, out)
    code = diar_main(["diarize", str(matrix.scp), "-o", str(out), "--config", config_path()])
    assert code == 1  # some recordings failed
    assert files_outside(matrix.root, out) | files_outside(tmp_path, out) == before
    # the same turns for every good recording, the same recordings without speech
    got, want = read_rttm(out), read_rttm(reference / "corpus.rttm")
    assert sorted(got) == sorted(want) == sorted(SPEECH)
    for reco_id, ann in want.items():
        assert got[reco_id].turns == ann.turns, reco_id
    # one line per bad recording, the job's failure row: id, stage, error type, a message naming
    # the file and the problem
    rows = [line.strip().split("\t") for line in capsys.readouterr().err.splitlines() if "\t" in line]
    assert sorted(r[0] for r in rows) == sorted(matrix.bad)
    for reco_id, stage, error_type, message in rows:
        assert (stage, error_type) == ("read", matrix.bad[reco_id].error_type), reco_id
        assert matrix.bad[reco_id].source in message and matrix.bad[reco_id].problem in message, message


class FlakyDiarizer(Diarizer):
    """A model that fails on one recording with the kind of error torch raises (RuntimeError)."""

    def apply(self, recording: RecordingInput, hook: StepHook = no_hook) -> Annotation:
        if recording.reco_id == "oom":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return Annotation(recording.reco_id, (Turn(recording.reco_id, 0.0, 1.0, "spk1"),))


def test_diar_diarize_goes_on_after_a_model_error(
    matrix: Matrix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import diar.pipelines
    from diar.cli import main as diar_main

    monkeypatch.setattr(diar.pipelines, "build_diarizer", FlakyDiarizer)
    good = matrix.root / "corpus" / "a.wav"
    scp = tmp_path / "wav.scp"
    scp.write_text(f"before {good}\noom {good}\nafter {good}\n", encoding="utf-8")
    out = tmp_path / "out.rttm"
    assert diar_main(["diarize", str(scp), "-o", str(out)]) == 1
    assert sorted(read_rttm(out)) == ["after", "before"]
    rows = [line.strip().split("\t") for line in capsys.readouterr().err.splitlines() if "\t" in line]
    assert [r[:3] for r in rows] == [["oom", "diarize", "RuntimeError"]] and "out of memory" in rows[0][3]


def test_a_pipe_command_runs_once_and_only_on_the_worker(matrix: Matrix, tmp_path: Path) -> None:
    runs = tmp_path / "runs.log"
    scp = tmp_path / "wav.scp"
    scp.write_text(f"piped sh -c 'echo run >> {runs}; cat {matrix.root / 'corpus' / 'a.wav'}' |\n")
    assert main(job_args(scp, tmp_path / "out", "--set", "job.allow_pipes=true")) == 0
    assert sorted(read_rttm(tmp_path / "out" / "corpus.rttm")) == ["piped"]
    assert runs.read_text().splitlines() == ["run"]
