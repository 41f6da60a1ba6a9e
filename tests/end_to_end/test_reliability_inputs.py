"""Issue 14, the reliability matrix, round 2: never touch the user's inputs, fail before the work
in one line, bounded errors and bad values.

Every case runs the real command (``diar ...`` or ``python -m jobs.diarize`` in this process)
and checks what a user would notice: the inputs are byte-identical afterwards (hashed before
and after), a setup error is one line with exit code 2 before any model loads, every
recording that can be diarized is diarized, and a rerun after a failure equals a clean run.
Audio is cut from the bundled sample (LibriSpeech, CC BY 4.0, see
diar/data/sample/ATTRIBUTION.md) or made here; the job tests use the energy diarizer of
job_helpers, the audio tests the real offline default pipeline.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import REPO, never_built
from job_helpers import EnergyDiarizer, energy_factory, make_corpus, read_failures_tsv
from ray_fixtures import ray_address  # noqa: F401  (fixture)

import diar.outputs
from diar.cli import main as diar_main
from diar.config import ConfigError, load_config
from diar.formats.rttm import read_rttm
from diar.manifests import read_wav_scp, write_profiles
from diar.outputs import TMP_MARKER
from jobs.diarize import main as job_main

SAMPLE = REPO / "diar" / "data" / "sample"
SR = 16000


# --------------------------------------------------------------------------- helpers


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (symlinks as their target text), by path."""
    out: dict[str, str] = {}
    for root in roots:
        paths = [root] if root.is_file() or root.is_symlink() else sorted(root.rglob("*"))
        for p in paths:
            if p.is_symlink():
                out[str(p)] = "link:" + os.readlink(p)
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def one_error_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """The single line the command wrote to stderr; it must contain every needle."""
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


def no_model(*args: object, **kwargs: object) -> object:
    raise AssertionError("no model may be loaded before the setup checks")


@pytest.fixture
def no_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any model load fails the test: setup errors must come first."""
    import diar.models.build
    import diar.pipelines
    import diar.pipelines.profile

    monkeypatch.setattr(diar.pipelines, "build_diarizer", no_model)
    monkeypatch.setattr(diar.models.build, "build_embedder", no_model)
    monkeypatch.setattr(diar.pipelines.profile, "ProfileMaker", no_model)


@pytest.fixture
def energy_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """``diar diarize`` with the fast energy diarizer instead of the default pipeline."""
    import diar.pipelines

    monkeypatch.setattr(diar.pipelines, "build_diarizer", EnergyDiarizer)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data folder: two speech pieces, wav.scp, reco2num_spk, an enrollment list, a config."""
    folder = tmp_path / "data"
    folder.mkdir()
    wav = sf.read(SAMPLE / "sim01_2spk.flac", dtype="float32")[0]
    sf.write(folder / "s1.wav", wav[: 6 * SR], SR, subtype="PCM_16")
    sf.write(folder / "s2.wav", wav[13 * SR : 19 * SR], SR, subtype="PCM_16")
    (folder / "wav.scp").write_text("s1 s1.wav\ns2 s2.wav\n", encoding="utf-8")
    (folder / "reco2num_spk").write_text("s1 2\n", encoding="utf-8")
    (folder / "enroll.scp").write_text("s1 spk-a s1.wav\n", encoding="utf-8")
    (folder / "config.yaml").write_text("clustering:\n  method: spectral\n", encoding="utf-8")
    return folder


# --------------------------------------------------------------------------- data loss


@pytest.mark.parametrize(
    "case",
    [
        "embed: the scp beside the ark is wav.scp",
        "embed: the ark is the audio",
        "diarize: -o is wav.scp",
        "diarize: parquet over the audio",
        "diarize: -o is reco2num_spk",
        "diarize: -o is the config",
        "diarize: -o is a symlink to the audio",
        "diarize: -o is a hard link to the audio",
        "diarize: -o is the enrollment list",
        "diarize: -o is the profiles' ark",
        "profiles: profile.scp is the enrollment list",
        "profiles: profile.names is the audio",
    ],
)
def test_no_command_writes_over_a_file_it_reads(
    case: str, data: Path, capsys: pytest.CaptureFixture[str], no_models: None
) -> None:
    d = data
    if "profiles' ark" in case:
        write_profiles(os.path.join(d, "p", ""), {"s1": (np.eye(2, 4, dtype=np.float32), ("a", "b"))})
    argv = {
        "embed: the scp beside the ark is wav.scp": ["embed", f"{d}/wav.scp", "-o", f"{d}/wav.ark"],
        "embed: the ark is the audio": ["embed", f"{d}/s1.wav", "-o", f"{d}/s1.wav"],
        "diarize: -o is wav.scp": ["diarize", f"{d}/wav.scp", "-o", f"{d}/wav.scp"],
        "diarize: parquet over the audio": [
            "diarize", f"{d}/s1.wav", "-o", f"{d}/s1.wav", "--format", "parquet"
        ],
        "diarize: -o is reco2num_spk": [
            "diarize", f"{d}/wav.scp", "--reco2num-spk", f"{d}/reco2num_spk", "-o", f"{d}/reco2num_spk"
        ],
        "diarize: -o is the config": [
            "diarize", f"{d}/s1.wav", "--config", f"{d}/config.yaml", "-o", f"{d}/config.yaml"
        ],
        "diarize: -o is a symlink to the audio": ["diarize", f"{d}/wav.scp", "-o", f"{d}/link.rttm"],
        "diarize: -o is a hard link to the audio": ["diarize", f"{d}/wav.scp", "-o", f"{d}/hard.rttm"],
        "diarize: -o is the enrollment list": [
            "diarize", f"{d}/wav.scp", "--enroll", f"{d}/enroll.scp", "-o", f"{d}/enroll.scp"
        ],
        "diarize: -o is the profiles' ark": [
            "diarize", f"{d}/wav.scp", "--profile-scp", f"{d}/p/profile.scp", "-o", f"{d}/p/profile.ark"
        ],
        "profiles: profile.scp is the enrollment list": [
            "profiles", "--enroll", f"{d}/p2/profile.scp", "--out", f"{d}/p2"
        ],
        "profiles: profile.names is the audio": [
            "profiles", "--enroll", f"{d}/enroll.scp", "--out", f"{d}/p3"
        ],
    }[case]  # fmt: skip
    if "symlink" in case:
        (d / "link.rttm").symlink_to(d / "s2.wav")
    if "hard link" in case:
        os.link(d / "s2.wav", d / "hard.rttm")
    if "profile.scp is the enrollment list" in case:
        (d / "p2").mkdir()
        (d / "p2" / "profile.scp").write_text(f"s1 spk-a {d}/s1.wav\n", encoding="utf-8")
    if "profile.names is the audio" in case:
        (d / "p3").mkdir()
        shutil.copy(d / "s1.wav", d / "p3" / "profile.names")
        (d / "enroll.scp").write_text(f"s1 spk-a {d}/p3/profile.names\n", encoding="utf-8")
    before = snapshot(d)
    assert diar_main(argv) == 2
    one_error_line(capsys, "is also an input")
    assert snapshot(d) == before


def test_overwrite_removes_only_the_jobs_own_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scp = make_corpus(tmp_path / "c", {"a": 3.0, "b": 2.0, "c": 4.0})
    inputs = snapshot(scp.parent)
    out = tmp_path / "out"
    base = ["--wav-scp", str(scp), "--out", str(out), "--local", "--no-progress"]
    assert job_main([*base, "--num-shards", "3"], energy_factory()) == 0
    # the user keeps their own files in OUT, one of them where the job keeps its shards
    (out / "shards" / "my-audio.wav").write_bytes((scp.parent / "000.wav").read_bytes())
    (out / "notes.txt").write_text("mine\n", encoding="utf-8")
    before = snapshot(out, scp.parent)
    changed = [*base, "--num-shards", "2", "--overwrite"]
    assert job_main(changed, never_built) == 2
    one_error_line(capsys, "did not write", "shards/my-audio.wav", "notes.txt")
    assert snapshot(out, scp.parent) == before
    # without them, --overwrite replaces the job's files, old shards included
    (out / "shards" / "my-audio.wav").unlink()
    (out / "notes.txt").unlink()
    assert job_main(changed, energy_factory()) == 0
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == sorted(
        [".lock", "corpus.parquet", "corpus.rttm", "failures.tsv", "job.json", "report.html", "summary.json"]
        + [
            f"shards/shard-0000{i}.{ext}"
            for i in range(2)
            for ext in ("done.json", "parquet", "rttm", "traces.ark", "traces.parquet")
        ]
    )
    assert snapshot(scp.parent) == inputs


def test_a_new_job_refuses_a_folder_holding_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out DATA`` where DATA holds the user's audio and wav.scp."""
    scp = make_corpus(tmp_path / "data", {"a": 3.0, "b": 2.0})
    before = snapshot(scp.parent)
    argv = ["--wav-scp", str(scp), "--out", str(scp.parent), "--local", "--no-progress"]
    assert job_main(argv, never_built) == 2
    one_error_line(capsys, "did not write", "wav.scp")
    assert job_main([*argv, "--overwrite"], never_built) == 2
    one_error_line(capsys, "did not write")
    assert snapshot(scp.parent) == before


def test_an_input_where_the_job_writes_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scp = make_corpus(tmp_path / "c", {"a": 3.0})
    out = tmp_path / "out"
    argv = ["--wav-scp", str(scp), "--out", str(out), "--local", "--no-progress"]
    assert job_main(argv, energy_factory()) == 0
    shutil.copy(scp.parent / "000.wav", out / "shards" / "x.wav")
    scp.write_text(scp.read_text() + f"x {out / 'shards' / 'x.wav'}\n", encoding="utf-8")
    before = snapshot(out, scp.parent)
    assert job_main(argv, never_built) == 2
    one_error_line(capsys, "is where the job writes", "x.wav")
    assert snapshot(out, scp.parent) == before


# --------------------------------------------------------------------------- fail before the work


@pytest.mark.parametrize(
    "case", ["a directory", "read-only", "a device", "under a file", "folder not writable", "empty", "a/"]
)
def test_an_output_that_cannot_be_written_fails_before_the_work(
    case: str,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_models: None,
) -> None:
    target = {
        "a directory": tmp_path,
        "read-only": tmp_path / "ro.rttm",
        "a device": Path(os.devnull),
        "under a file": data / "s1.wav" / "out.rttm",
        "folder not writable": tmp_path / "locked" / "out.rttm",
        "empty": "",
        "a/": f"{tmp_path}/new/",
    }[case]
    if case == "read-only":
        assert isinstance(target, Path)
        target.write_text("previous result\n", encoding="utf-8")
        target.chmod(0o444)
    if case == "folder not writable":  # as root a chmod cannot make it so: the kernel's answer
        (tmp_path / "locked").mkdir()

        def refused(folder: str, name: str) -> tuple[int, str]:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

        monkeypatch.setattr(diar.outputs, "create_temp", refused)
    before = snapshot(data)
    assert diar_main(["diarize", str(data / "wav.scp"), "-o", str(target)]) == 2
    expected = {
        "a directory": "is a directory",
        "read-only": "read-only",
        "a device": "is a character device",
        "under a file": "not a folder",
        "folder not writable": "Permission denied",
        "empty": "give the path of a file",
        "a/": "give the path of a file",
    }[case]
    one_error_line(capsys, "-o", expected)
    assert snapshot(data) == before
    if case == "read-only":
        assert isinstance(target, Path) and target.read_text(encoding="utf-8") == "previous result\n"


def test_an_output_in_a_missing_folder_is_written(data: Path, tmp_path: Path, energy_model: None) -> None:
    out = tmp_path / "new" / "deeper" / "out.rttm"
    assert diar_main(["diarize", str(data / "wav.scp"), "-o", str(out)]) == 0
    assert sorted(read_rttm(out)) == ["s1", "s2"]


def test_a_full_disk_keeps_the_previous_output_of_diar_diarize(
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    energy_model: None,
) -> None:
    import diar.formats.rttm

    out = tmp_path / "out.rttm"
    assert diar_main(["diarize", str(data / "wav.scp"), "-o", str(out)]) == 0
    previous = out.read_bytes()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(diar.formats.rttm, "write_rttm", full)
    assert diar_main(["diarize", str(data / "s1.wav"), "-o", str(out)]) == 2
    one_error_line(capsys, str(out), "No space left on device")
    assert out.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir() if TMP_MARKER in p.name) == []


@pytest.fixture
def job_corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "corpus", {"a": 3.0, "b": 2.0, "c": 4.0, "d": 1.5})


def job_argv(scp: Path, out: Path | str, *extra: str) -> list[str]:
    return ["--wav-scp", str(scp), "--out", str(out), "--local", "--no-progress", "--num-shards", "2", *extra]


@pytest.fixture
def clean_run(job_corpus: Path, tmp_path: Path) -> Path:
    """The reference: a clean run of the job on the corpus."""
    out = tmp_path / "clean"
    assert job_main(job_argv(job_corpus, out), energy_factory()) == 0
    return out


def corpus_bytes(out: Path) -> dict[str, bytes]:
    return {n: (out / n).read_bytes() for n in ("corpus.rttm", "corpus.parquet", "failures.tsv")}


def test_a_full_disk_leaves_the_previous_corpus_files_and_a_rerun_finishes(
    job_corpus: Path,
    clean_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    assert job_main(job_argv(job_corpus, out), energy_factory()) == 0
    previous = snapshot(out)
    capsys.readouterr()
    create = diar.outputs.create_temp

    def full_at_parquet(folder: str, name: str) -> tuple[int, str]:
        if name.startswith("corpus.parquet"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return create(folder, name)

    monkeypatch.setattr(diar.outputs, "create_temp", full_at_parquet)
    # a rerun that would change the summary (another budget): nothing of it may land
    assert job_main(job_argv(job_corpus, out, "--set", "job.max_failures=3"), never_built) == 2
    one_error_line(capsys, "corpus.parquet", "No space left on device")
    assert snapshot(out) == previous  # corpus.rttm, summary.json and the rest as they were
    monkeypatch.setattr(diar.outputs, "create_temp", create)
    assert job_main(job_argv(job_corpus, out, "--set", "job.max_failures=3"), never_built) == 0
    assert corpus_bytes(out) == corpus_bytes(clean_run)
    assert json.loads((out / "summary.json").read_text())["failure_budget"]["max_failures"] == 3


def test_a_full_disk_while_shards_run_fails_their_recordings_and_a_rerun_equals_a_clean_run(
    job_corpus: Path,
    clean_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create = diar.outputs.create_temp

    def full_for_shards(folder: str, name: str) -> tuple[int, str]:
        if os.path.basename(folder) == "shards" and ".rttm" in name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return create(folder, name)

    out = tmp_path / "out"
    monkeypatch.setattr(diar.outputs, "create_temp", full_for_shards)
    assert job_main(job_argv(job_corpus, out), energy_factory()) == 1  # over the budget of 0
    one_error_line(capsys, "4 of 4 recordings failed", "failures.tsv")
    rows = read_failures_tsv((out / "failures.tsv").read_text(encoding="utf-8"))
    assert len(rows) == 4 and all(r.stage == "write" and "No space left" in r.message for r in rows)
    monkeypatch.setattr(diar.outputs, "create_temp", create)
    assert job_main(job_argv(job_corpus, out), energy_factory()) == 0
    assert corpus_bytes(out) == corpus_bytes(clean_run)


def test_a_read_only_out_is_one_line(
    job_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(folder: str, name: str) -> tuple[int, str]:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(diar.outputs, "create_temp", read_only)
    out = tmp_path / "ro"
    assert job_main(job_argv(job_corpus, out), never_built) == 2
    one_error_line(capsys, str(out), "Read-only file system")
    assert list(out.rglob("*")) == []


@pytest.mark.parametrize(
    ("url", "needle"),
    [("s3://bucket/runs/x", "s3fs"), ("gs://bucket/runs/x", "gcsfs"), ("foo://x/y", "Protocol not known")],
)
def test_an_out_url_that_cannot_be_opened_is_one_line(
    url: str, needle: str, job_corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = {"s3fs": "s3fs", "gcsfs": "gcsfs"}.get(needle)
    if backend is not None:
        try:
            __import__(backend)
        except ImportError:
            pass
        else:
            pytest.skip(f"{backend} is installed here")
    before = snapshot(job_corpus.parent)
    assert job_main(job_argv(job_corpus, url), never_built) == 2
    one_error_line(capsys, url, needle)
    assert snapshot(job_corpus.parent) == before


@pytest.mark.parametrize(
    ("wav_scp", "out", "needle"),
    [
        (os.devnull, "out", "is a character device"),
        ("wav.scp", "", "--out is empty"),
        ("folder", "out", "is a directory"),
    ],
)
def test_a_manifest_or_out_that_is_no_such_thing_is_one_line(
    wav_scp: str, out: str, needle: str, job_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scp = {"wav.scp": str(job_corpus), "folder": str(tmp_path)}.get(wav_scp, wav_scp)
    target = str(tmp_path / out) if out else ""
    assert job_main(job_argv(Path(scp), target), never_built) == 2
    one_error_line(capsys, needle)


def test_a_config_that_is_not_utf8_is_one_line(
    job_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes("mode: cluster\n# réglages\n".encode("latin-1"))
    assert job_main([*job_argv(job_corpus, tmp_path / "out"), "--config", str(config)], never_built) == 2
    one_error_line(capsys, f"{config}:2", "not valid UTF-8")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_truncated_job_json_is_one_line_and_nothing_is_removed(
    overwrite: bool, job_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert job_main(job_argv(job_corpus, out), energy_factory()) == 0
    plan = (out / "job.json").read_bytes()
    (out / "job.json").write_bytes(plan[: len(plan) // 2])
    before = snapshot(out, job_corpus.parent)
    extra = ["--overwrite", "--set", "clustering.threshold=0.7"] if overwrite else []
    assert job_main(job_argv(job_corpus, out, *extra), never_built) == 2
    one_error_line(capsys, str(out / "job.json"), "truncated or corrupt")
    assert snapshot(out, job_corpus.parent) == before


@pytest.mark.parametrize("damage", ["lines deleted", "garbage", "parquet rewritten", "removed"])
def test_a_shard_file_changed_after_its_done_record_is_redone(
    damage: str, job_corpus: Path, clean_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert job_main(job_argv(job_corpus, out), energy_factory()) == 0
    rttm = out / "shards" / "shard-00000.rttm"
    if damage == "lines deleted":
        rttm.write_text("".join(rttm.read_text().splitlines(keepends=True)[1:]))
    elif damage == "garbage":
        rttm.write_bytes(b"\x00\xff not an rttm \n")
    elif damage == "parquet rewritten":
        (out / "shards" / "shard-00000.parquet").write_bytes(b"PAR1")
    else:
        rttm.unlink()
    pids = tmp_path / "pids"
    pids.mkdir()
    assert job_main(job_argv(job_corpus, out), energy_factory(pid_dir=str(pids))) == 0
    plan = json.loads((out / "job.json").read_text())
    redone = {rid for s in plan["shards"] if s["shard_id"] == "shard-00000" for rid, _ in s["items"]}
    assert {p.read_text() for p in pids.iterdir()} == redone  # that shard only
    assert corpus_bytes(out) == corpus_bytes(clean_run)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("clustering.num_speakers=-3", "clustering.num_speakers"),
        ("clustering.num_speakers=0", "clustering.num_speakers"),
        ("clustering.max_speakers=0", "clustering.max_speakers"),
        ("clustering.min_speakers=5", "clustering.min_speakers"),  # above max_speakers=3 below
        ("embedding.window=0", "embedding.window"),
        ("embedding.hop=0", "embedding.hop"),
        ("embedding.hop=2.0", "embedding.hop"),  # longer than the window
        ("embedding.batch_size=0", "embedding.batch_size"),
        ("embedding.device=gpu", "embedding.device"),
        ("frame_model.device=cuda:x", "frame_model.device"),
        ("postprocess.smooth_size=0", "postprocess.smooth_size"),
        ("postprocess.smooth_size=-5", "postprocess.smooth_size"),
        ("postprocess.dur_threshold=-1", "postprocess.dur_threshold"),
        ("vad.threshold=2", "vad.threshold"),
        ("vad=null", "vad"),
        ("profile.adapt=1.5", "profile.adapt"),
        ("clustering.pval=0", "clustering.pval"),
        ("frame_model.hop=20", "frame_model.hop"),
        ("frame_model.threshold=-0.1", "frame_model.threshold"),
        ("job.placement_timeout=-1", "job.placement_timeout"),
        ("embedding.window=.nan", "embedding.window"),
        ("mode=" + "x" * 300, "mode"),
    ],
)
def test_a_bad_config_value_stops_before_anything_is_written(
    override: str, key: str, job_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    extra = (
        ["--set", override, "--set", "clustering.max_speakers=3"]
        if "min_speakers" in override
        else ["--set", override]
    )
    assert job_main(job_argv(job_corpus, out, *extra), never_built) == 2
    line = one_error_line(capsys, key + ":")
    assert len(line) < 600
    assert not out.exists()  # so the corrected rerun is a new job
    # the same check in one process, before a model loads
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, extra[1::2])


def test_vad_null_in_a_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("vad: null\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"vad: null is not allowed"):
        load_config(config)


def test_a_job_that_failed_before_any_shard_takes_the_corrected_config(
    job_corpus: Path, clean_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """job.json is written, then the model does not load: the corrected rerun needs no --overwrite."""
    from diar.errors import ModelLoadError

    def broken(config):  # type: ignore[no-untyped-def]
        raise ModelLoadError("embedding.model_dir /nowhere: missing sv.pb")

    out = tmp_path / "out"
    assert job_main(job_argv(job_corpus, out, "--set", "clustering.threshold=0.9"), broken) == 2
    one_error_line(capsys, "missing sv.pb")
    assert (out / "job.json").exists()
    assert job_main(job_argv(job_corpus, out), energy_factory()) == 0
    assert corpus_bytes(out) == corpus_bytes(clean_run)


@pytest.mark.slow
def test_an_actor_no_node_can_hold_is_an_error_on_a_fixed_cluster(
    ray_address: str,  # noqa: F811
    job_corpus: Path,
    tmp_path: Path,
) -> None:
    from jobs.actors import ActorSpec, PlacementError, cluster_autoscales, wait_until_placeable
    from jobs.diarize import run_job

    assert not cluster_autoscales()  # a local ray.init: every node type is the node itself
    out = tmp_path / "out"
    cfg = load_config(None, ["job.num_cpus=100", "job.placement_timeout=0.5"])
    with pytest.raises(PlacementError, match=r"100 CPUs.*largest node has 2 CPUs.*job\.placement_timeout"):
        run_job(cfg, str(job_corpus), str(out), diarizer_factory=never_built)
    # the corrected rerun goes on in the same OUT (job.num_cpus is not part of the plan)
    report = run_job(
        load_config(None, ["job.num_cpus=1"]), str(job_corpus), str(out), diarizer_factory=energy_factory()
    )
    assert report.exit_code == 0 and report.summary["recordings"]["done"] == 4
    # on an autoscaling cluster the same actor is demand: no error
    big = ActorSpec(num_cpus=100, num_gpus=0, max_restarts=0, max_task_retries=0)
    wait_until_placeable(big, timeout=0, autoscales=lambda: True)
    wait_until_placeable(big, timeout=None)  # null: wait for it


# --------------------------------------------------------------------------- bounded errors


def test_a_yaml_alias_bomb_is_a_short_error(
    job_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bomb = tmp_path / "lol.yaml"
    bomb.write_text(
        "mode: [&a [l,l,l,l,l,l,l,l,l], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b],\n"
        "  &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], [*d,*d,*d,*d,*d,*d,*d,*d,*d]]\n",
        encoding="utf-8",
    )
    assert bomb.stat().st_size < 200
    assert job_main([*job_argv(job_corpus, tmp_path / "out"), "--config", str(bomb)], never_built) == 2
    line = one_error_line(capsys, str(bomb), "aliases")
    assert len(line) < 300
    # under the limit, a deep value is quoted in a few hundred characters at most
    small = tmp_path / "small.yaml"
    small.write_text("mode: [&a [l,l,l,l,l,l,l,l,l], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], [*b,*b,*b,*b]]\n")
    with pytest.raises(ConfigError) as info:
        load_config(small)
    assert "mode" in str(info.value) and len(str(info.value)) < 500


def test_audio_given_as_the_manifest_stops_after_a_few_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.wav"
    rng = np.random.default_rng(0)
    sf.write(big, rng.normal(0, 0.2, 60 * SR).astype(np.float32), SR, subtype="PCM_16")
    assert job_main(job_argv(big, tmp_path / "out"), never_built) == 2
    line = one_error_line(capsys, str(big), "5 malformed lines", "stopped reading")
    assert len(line) < 1000


@pytest.mark.parametrize("bad", ["nul", "escape", "delete"])
def test_control_characters_in_ids_are_refused_with_file_and_line(
    bad: str, job_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    char = {"nul": "\x00", "escape": "\x1b", "delete": "\x7f"}[bad]
    lines = job_corpus.read_text(encoding="utf-8").splitlines()
    lines[1] = f"b{char}x {lines[1].split()[1]}"
    scp = tmp_path / "wav.scp"
    scp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert job_main(job_argv(scp, tmp_path / "out"), never_built) == 2
    one_error_line(capsys, f"{scp}:2", f"U+{ord(char):04X}")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- bad recordings: one row each


def header_rate(path: Path, rate: int) -> None:
    """Rewrite a PCM WAV header's sample rate (and byte rate) to ``rate``."""
    data = bytearray(path.read_bytes())
    at = data.index(b"fmt ") + 8
    channels, bits = (
        int.from_bytes(data[at + 2 : at + 4], "little"),
        int.from_bytes(data[at + 14 : at + 16], "little"),
    )
    data[at + 4 : at + 8] = rate.to_bytes(4, "little")
    data[at + 8 : at + 12] = (rate * channels * bits // 8 % (1 << 32)).to_bytes(4, "little")
    path.write_bytes(bytes(data))


@pytest.fixture
def odd_sources(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A wav.scp of good recordings and of odd ones: implausible header rates, a device, a FIFO,
    a symlink loop and a broken symlink; expected message per odd recording."""
    folder = tmp_path / "odd"
    scp = make_corpus(folder, {"good-1": 3.0, "good-2": 2.0})
    good = folder / "000.wav"
    expected: dict[str, str] = {}
    lines = scp.read_text(encoding="utf-8").splitlines()
    for name, rate in (("rate-2ghz", 2_000_000_000), ("rate-100mhz", 100_000_000), ("rate-500hz", 500)):
        path = folder / f"{name}.wav"
        shutil.copy(good, path)
        header_rate(path, rate)
        lines.append(f"{name} {path}")
        expected[name] = f"implausible sample rate {rate} Hz in the header (allowed: 1000 to 768000 Hz)"
    os.mkfifo(folder / "fifo.wav")
    (folder / "loop.wav").symlink_to(folder / "loop.wav")
    (folder / "broken.wav").symlink_to(folder / "gone.wav")
    odd = {
        "device": (os.devnull, "is a character device"),
        "fifo": (str(folder / "fifo.wav"), "is a named pipe (FIFO)"),
        "loop": (str(folder / "loop.wav"), "symbolic link loop"),
        "broken-link": (str(folder / "broken.wav"), "broken symbolic link"),
    }
    for name, (source, message) in odd.items():
        lines.append(f"{name} {source}")
        expected[name] = message
    scp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    yield scp, expected


def test_odd_sources_are_one_row_each_saying_what_they_are(
    odd_sources: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    scp, expected = odd_sources
    before = snapshot(scp.parent)
    out = tmp_path / "out"
    code = job_main(job_argv(scp, out, "--set", f"job.max_failures={len(expected)}"), energy_factory())
    assert code == 0
    rows = {r.reco_id: r for r in read_failures_tsv((out / "failures.tsv").read_text(encoding="utf-8"))}
    assert sorted(rows) == sorted(expected)
    for reco_id, message in expected.items():
        assert rows[reco_id].stage == "read" and message in rows[reco_id].message, rows[reco_id]
    assert sorted(read_rttm(out / "corpus.rttm")) == ["good-1", "good-2"]  # the others are diarized
    assert snapshot(scp.parent) == before


@pytest.mark.slow
def test_a_dc_offset_does_not_change_the_turns(tmp_path: Path) -> None:
    """The real default pipeline: a recording with a 0.5 offset gives the turns of the clean one."""
    wav = sf.read(SAMPLE / "sim01_2spk.flac", dtype="float32")[0][: 20 * SR]
    sf.write(tmp_path / "clean.wav", wav, SR, subtype="FLOAT")
    sf.write(tmp_path / "offset.wav", wav + 0.5, SR, subtype="FLOAT")
    out = tmp_path / "out.rttm"
    assert (
        diar_main(["diarize", str(tmp_path / "clean.wav"), str(tmp_path / "offset.wav"), "-o", str(out)]) == 0
    )
    got = read_rttm(out)
    assert len(got["clean"].turns) >= 2
    assert [(t.start, t.end, t.speaker) for t in got["offset"].turns] == [
        (t.start, t.end, t.speaker) for t in got["clean"].turns
    ]


def test_silent_enrollment_is_refused_naming_the_speaker_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.profiles import run_profiles_job

    folder = tmp_path / "enroll"
    folder.mkdir()
    sf.write(folder / "quiet.wav", np.zeros(2 * SR, dtype=np.float32), SR, subtype="PCM_16")
    sf.write(folder / "offset.wav", np.full(2 * SR, 0.25, dtype=np.float32), SR, subtype="PCM_16")
    enroll = tmp_path / "enroll.scp"
    lines = [f"sim01_2spk {spk} {SAMPLE / 'enroll' / f}" for spk, f in (("a", "3005-163389-0008.flac"),)]
    lines += [f"rec-q quiet {folder / 'quiet.wav'}", f"rec-o hum {folder / 'offset.wav'}"]
    enroll.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = snapshot(folder, enroll)
    report = run_profiles_job(
        load_config(None, ["job.max_failures=2"]), str(enroll), str(tmp_path / "p"), local=True
    )
    assert report.exit_code == 0 and report.done == 1
    rows = {f.reco_id: f for f in report.failures}
    assert sorted(rows) == ["rec-o", "rec-q"]
    for reco_id, (speaker, name) in {"rec-q": ("quiet", "quiet.wav"), "rec-o": ("hum", "offset.wav")}.items():
        row = rows[reco_id]
        assert (row.stage, row.error_type) == ("embed", "NoSpeechError")
        assert f"speaker '{speaker}' is silent" in row.message and name in row.message
    # in one process: one line naming the speaker and the file
    assert diar_main(["profiles", "--enroll", str(enroll), "--out", str(tmp_path / "p2")]) == 2
    one_error_line(capsys, "speaker 'quiet' is silent", "quiet.wav")
    assert snapshot(folder, enroll) == before


def test_an_all_zero_profile_is_refused_naming_the_speaker(
    job_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = list(read_wav_scp(job_corpus))
    profiles = {r: (np.eye(2, 4, dtype=np.float32), ("ann", "bob")) for r in ids}
    profiles[ids[1]] = (np.array([[1, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32), ("ann", "bob"))
    scp = write_profiles(os.path.join(tmp_path, "p", ""), profiles)
    out = tmp_path / "out"
    assert job_main(job_argv(job_corpus, out, "--profile-scp", str(scp)), never_built) == 2
    one_error_line(capsys, f"{scp}:2", "speaker 'bob'", "all zeros")
    assert not out.exists()


def test_asking_for_more_speakers_than_can_be_found_warns_why(
    data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out.rttm"
    with caplog.at_level(logging.WARNING):
        assert diar_main(["diarize", str(data / "s1.wav"), "-o", str(out), "--num-speakers", "50"]) == 0
    found = len(read_rttm(out)["s1"].speakers)
    assert found < 50
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # the default (frame mode) clusters the windows' local speakers; mode cluster, windows of speech
    assert any(f"50 speakers requested but {found} found" in w and "local speakers" in w for w in warnings)


# --------------------------------------------------------------------------- permissions


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_respect_the_umask(umask: int, data: Path, tmp_path: Path, energy_model: None) -> None:
    previous = os.umask(umask)
    try:
        rttm = tmp_path / "out.rttm"
        pq = tmp_path / "out.parquet"
        assert diar_main(["diarize", str(data / "wav.scp"), "-o", str(rttm)]) == 0
        assert diar_main(["diarize", str(data / "wav.scp"), "-o", str(pq), "--format", "parquet"]) == 0
        ark = tmp_path / "emb" / "x.ark"
        assert diar_main(["embed", str(data / "s1.wav"), "-o", str(ark)]) == 0
        assert (
            diar_main(["profiles", "--enroll", str(data / "enroll.scp"), "--out", str(tmp_path / "p")]) == 0
        )
    finally:
        os.umask(previous)
    wanted = 0o666 & ~umask
    written = [rttm, pq, ark, ark.with_suffix(".scp"), *sorted((tmp_path / "p").iterdir())]
    assert len(written) == 7
    for path in written:
        assert path.stat().st_mode & 0o777 == wanted, (path, oct(path.stat().st_mode))
