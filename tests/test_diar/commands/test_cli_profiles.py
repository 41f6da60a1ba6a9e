"""``diar profiles``: enrollment list -> profile.ark / profile.scp / profile.names, read back by kaldiio."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import kaldiio
import numpy as np
import pytest
from helpers import REPO, TINY_CAMPPLUS
from ray_fixtures import ray_address  # noqa: F401  (fixture)
from xvector_helpers import golden_waveform, write_model_dir

from diar.audio import load_audio
from diar.commands import profiles as command
from diar.config import Config, ConfigError, load_config
from diar.errors import AudioError, ManifestError
from diar.manifests import read_profiles
from diar.models.campplus import CAMPPlusEmbedder
from diar.models.xvector import XVectorEmbedder
from diar.pipelines.steps import normalize_level

SAMPLE = REPO / "diar" / "data" / "sample"
CONFIGS = REPO / "configs"


def run_command(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(list(argv)))


@pytest.fixture
def enrollment(tmp_path: Path, write_wav) -> Path:  # type: ignore[no-untyped-def]
    """Two recordings; speaker 'b' of rec-1 has two files; a non-ASCII recording id."""
    files = {name: write_wav(f"enroll/{name}.wav", data=golden_waveform(n)) for name, n in
             [("a", 12000), ("b1", 16000), ("b2", 9001), ("c", 20000)]}  # fmt: skip
    lines = [
        f"rec-1 a {files['a']}",
        "rec-1 b enroll/b1.wav",  # relative to the list's folder
        f"rec-1 b {files['b2']}",
        f"réunion_2 c {files['c']}",
        f"réunion_2 a {files['a']}",
    ]
    path = tmp_path / "enroll.scp"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_xvector_profiles_round_trip_kaldiio(tmp_path: Path, enrollment: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    model = write_model_dir(tmp_path / "model")
    out = tmp_path / "out"
    code = run_command(
        "--enroll", str(enrollment), "--out", str(out), "--model", "xvector", "--model-dir", str(model),
        "--set", "mode=profile", "--set", "profile.enroll_vad=false", "--device", "cpu",
    )  # fmt: skip
    assert code == 0
    assert capsys.readouterr().out.strip() == str(out / "profile.scp")
    assert sorted(p.name for p in out.iterdir()) == ["profile.ark", "profile.names", "profile.scp"]

    emb = XVectorEmbedder(str(model))
    enroll_dir = enrollment.parent / "enroll"

    level = load_config().embedding.normalize_db  # files are scaled to the windows' level first

    def utt(name: str) -> np.ndarray:
        wav = load_audio(str(enroll_dir / f"{name}.wav"), 16000)
        return emb.embed_utterance(wav if level is None else normalize_level(wav[None], level)[0])

    expected = {
        "rec-1": np.stack([utt("a"), (utt("b1") + utt("b2")) / 2]),
        "réunion_2": np.stack([utt("c"), utt("a")]),
    }
    # kaldiio reads the scp as written, from any working directory
    loaded = kaldiio.load_scp(str(out / "profile.scp"))
    assert list(loaded.keys()) == ["rec-1", "réunion_2"]
    for reco, matrix in expected.items():
        got = loaded[reco]
        assert got.dtype == np.float32 and got.shape == (2, 6)
        np.testing.assert_allclose(got, matrix, rtol=1e-5, atol=1e-5)
    # diar's own reader gives the same matrices, with the names
    ours = read_profiles(out / "profile.scp")
    assert ours["rec-1"][1] == ("a", "b") and ours["réunion_2"][1] == ("c", "a")
    for reco in expected:
        np.testing.assert_array_equal(ours[reco][0], loaded[reco])
    assert (out / "profile.names").read_text(encoding="utf-8") == "rec-1 a b\nréunion_2 c a\n"


def test_default_profiles_of_bundled_sample(tmp_path: Path) -> None:
    """The default config (mode frame): CAM++ of the speech segmentation-3.0 hears in each
    enrollment file (no VAD), as the frame diarizer makes them: two distinct speakers."""
    from diar.manifests import read_enrollment
    from diar.pipelines.frame import FrameDiarizer

    assert run_command("--enroll", str(SAMPLE / "enroll.scp"), "--out", str(tmp_path)) == 0
    ((reco, matrix),) = kaldiio.load_scp(str(tmp_path / "profile.scp")).items()
    assert reco == "sim01_2spk" and matrix.shape == (2, 192) and np.isfinite(matrix).all()
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)  # CAM++ rows are not unit length
    assert float(unit[0] @ unit[1]) < 0.5  # two voices far apart in cosine
    expected, names = FrameDiarizer(load_config()).enroll(read_enrollment(SAMPLE / "enroll.scp")[reco], reco)
    assert names == ("3005", "3331")
    np.testing.assert_allclose(matrix, expected, rtol=1e-5, atol=1e-5)


def test_campplus_profiles_round_trip_kaldiio(tmp_path: Path, enrollment: Path) -> None:
    """``diar profiles --model campplus`` with the tiny checkpoint: each row is CAM++'s embedding
    of the speaker's (level-normalised) files, averaged, as kaldiio reads it back."""
    out = tmp_path / "out"
    code = run_command(
        "--enroll", str(enrollment), "--out", str(out), "--model", "campplus",
        "--model-dir", str(TINY_CAMPPLUS), "--set", "mode=profile", "--set", "profile.enroll_vad=false",
        "--device", "cpu",
    )  # fmt: skip
    assert code == 0
    emb = CAMPPlusEmbedder(str(TINY_CAMPPLUS), device="cpu")
    level = load_config().embedding.normalize_db
    assert level is not None

    def utt(name: str) -> np.ndarray:
        wav = load_audio(str(enrollment.parent / "enroll" / f"{name}.wav"), 16000)
        return emb.embed_utterance(normalize_level(wav[None], level)[0])

    expected = {
        "rec-1": np.stack([utt("a"), (utt("b1") + utt("b2")) / 2]),
        "réunion_2": np.stack([utt("c"), utt("a")]),
    }
    loaded = kaldiio.load_scp(str(out / "profile.scp"))
    assert list(loaded) == ["rec-1", "réunion_2"]
    for reco, matrix in expected.items():
        assert loaded[reco].dtype == np.float32 and loaded[reco].shape == (2, 16)
        np.testing.assert_allclose(loaded[reco], matrix, rtol=1e-5, atol=1e-5)


def test_campplus_profiles_then_profile_mode(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """configs/profile.yaml end to end: ``diar profiles`` then ``diar diarize --profile-scp`` with
    the same (tiny) CAM++; profiles of another embedder are refused, naming the dimensions."""
    from diar.cli import main
    from diar.formats.rttm import read_rttm

    config = ["--config", str(CONFIGS / "profile.yaml")]
    tiny = ["--set", f"embedding.model_dir={TINY_CAMPPLUS}", "--set", "embedding.device=cpu"]
    out = tmp_path / "profiles"
    assert main(["profiles", *config, *tiny, "--enroll", str(SAMPLE / "enroll.scp"), "--out", str(out)]) == 0
    diarize = ["diarize", *config, "--profile-scp", str(out / "profile.scp"), str(SAMPLE / "wav.scp")]
    capsys.readouterr()
    rttm = tmp_path / "out.rttm"
    assert main([*diarize, *tiny, "-o", str(rttm)]) == 0
    ((reco, ann),) = read_rttm(rttm).items()
    assert reco == "sim01_2spk" and len(ann) > 0 and set(ann.speakers) <= {"3005", "3331"}
    # 16-dimensional profiles given to the real 192-dimensional CAM++: the recording fails
    assert main([*diarize, "-o", str(rttm)]) == 1
    err = capsys.readouterr().err
    assert "profiles of shape (2, 16) do not fit the campplus embedder (dimension 192)" in err


def test_errors(tmp_path: Path, enrollment: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown embedder 'nope'; valid names: .*ge2e.*xvector"):
        run_command("--enroll", str(enrollment), "--out", str(tmp_path / "o"), "--model", "nope")
    bad = tmp_path / "bad.scp"
    bad.write_text("rec-1 a\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=re.escape("bad.scp:1")):
        run_command("--enroll", str(bad), "--out", str(tmp_path / "o"))
    missing = tmp_path / "missing.scp"
    missing.write_text(f"rec-9 a {tmp_path / 'nowhere.wav'}\n", encoding="utf-8")
    with pytest.raises(AudioError, match=r"rec-9.*nowhere\.wav"):
        run_command("--enroll", str(missing), "--out", str(tmp_path / "o"))
    assert not (tmp_path / "o" / "profile.scp").exists()


# --------------------------------------------------------------------------- python -m jobs.profiles


def job_config(model: Path, *overrides: str, name: str = "xvector") -> Config:
    return load_config(
        None,
        [
            f"embedding.name={name}",
            f"embedding.model_dir={model}",
            "embedding.device=cpu",
            "mode=profile",
            "profile.enroll_vad=false",
            "job.num_cpus=1",
            *overrides,
        ],
    )


def test_job_local_failures_and_budget(tmp_path: Path, enrollment: Path) -> None:
    from jobs.profiles import run_profiles_job

    model = write_model_dir(tmp_path / "model")
    # a third recording whose enrollment file does not exist
    with enrollment.open("a", encoding="utf-8") as f:
        f.write(f"rec-3 x {tmp_path / 'gone.wav'}\n")
    out = tmp_path / "job"
    report = run_profiles_job(job_config(model, "job.num_shards=2"), str(enrollment), str(out), local=True)
    assert report.exit_code == 1 and report.done == 2
    assert "1 of 3 recordings failed" in report.reason
    assert [(f.reco_id, f.stage) for f in report.failures] == [("rec-3", "read")]
    rows = (out / "failures.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "reco_id\tstage\terror_type\tmessage" and rows[1].startswith(
        "rec-3\tread\tAudioNotFoundError"
    )
    loaded = kaldiio.load_scp(str(out / "profile.scp"))
    assert list(loaded) == ["rec-1", "réunion_2"]
    # within budget: exit code 0
    report = run_profiles_job(job_config(model, "job.max_failures=1"), str(enrollment), str(out), local=True)
    assert report.exit_code == 0 and report.reason == ""


def test_job_local_with_campplus_equals_diar_profiles(tmp_path: Path, enrollment: Path) -> None:
    """``python -m jobs.profiles`` with CAM++ (tiny checkpoint) writes what ``diar profiles`` writes."""
    from jobs.profiles import run_profiles_job

    cli_out = tmp_path / "cli"
    run_command(
        "--enroll", str(enrollment), "--out", str(cli_out), "--model", "campplus",
        "--model-dir", str(TINY_CAMPPLUS), "--set", "mode=profile", "--set", "profile.enroll_vad=false",
        "--device", "cpu",
    )  # fmt: skip
    out = tmp_path / "job"
    config = job_config(TINY_CAMPPLUS, "job.num_shards=2", name="campplus")
    report = run_profiles_job(config, str(enrollment), str(out), local=True)
    assert report.exit_code == 0 and report.done == 2 and not report.failures
    assert (out / "profile.names").read_bytes() == (cli_out / "profile.names").read_bytes()
    ours, theirs = kaldiio.load_scp(str(out / "profile.scp")), kaldiio.load_scp(str(cli_out / "profile.scp"))
    assert list(ours) == list(theirs) == ["rec-1", "réunion_2"]
    for reco in ours:
        assert ours[reco].shape == (2, 16)
        np.testing.assert_allclose(ours[reco], theirs[reco], rtol=1e-6, atol=1e-6)


def test_job_refuses_bad_job_values_before_any_work(tmp_path: Path, enrollment: Path) -> None:
    from diar.config import ConfigError
    from jobs.profiles import run_profiles_job

    with pytest.raises(ConfigError, match=r"job\.num_shards"):  # refused when the config is loaded
        config = job_config(tmp_path / "no-model", "job.num_shards=0")
        run_profiles_job(config, str(enrollment), str(tmp_path / "out"), local=True)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_job_on_ray_equals_diar_profiles(
    tmp_path: Path,
    enrollment: Path,
    ray_address: str,  # noqa: F811
) -> None:
    from jobs.profiles import run_profiles_job

    model = write_model_dir(tmp_path / "model")
    cli_out = tmp_path / "cli"
    run_command(
        "--enroll", str(enrollment), "--out", str(cli_out), "--model", "xvector", "--model-dir", str(model),
        "--set", "mode=profile", "--set", "profile.enroll_vad=false", "--device", "cpu",
    )  # fmt: skip
    out = tmp_path / "ray"
    report = run_profiles_job(
        job_config(model, "job.num_shards=2"), str(enrollment), str(out), address=ray_address
    )
    assert report.exit_code == 0 and report.done == 2 and not report.failures
    assert (out / "profile.names").read_bytes() == (cli_out / "profile.names").read_bytes()
    ours, theirs = kaldiio.load_scp(str(out / "profile.scp")), kaldiio.load_scp(str(cli_out / "profile.scp"))
    assert list(ours) == list(theirs)
    for reco in ours:
        np.testing.assert_allclose(ours[reco], theirs[reco], rtol=1e-6, atol=1e-6)
