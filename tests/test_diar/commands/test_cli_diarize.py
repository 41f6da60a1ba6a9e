"""``diar diarize`` and ``diar embed`` end to end, in process, on pieces of the bundled sample."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import REPO

from diar.cli import main
from diar.formats.parquet import read_parquet
from diar.formats.rttm import read_rttm
from diar.formats.vad import read_vad

SR = 16000
SAMPLE = REPO / "diar" / "data" / "sample"


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 20 s pieces of the sample as wav files and a wav.scp naming them (relative paths)."""
    folder = tmp_path_factory.mktemp("audio")
    wav = sf.read(SAMPLE / "sim01_2spk.flac", dtype="float32")[0]
    sf.write(folder / "a.wav", wav[: 20 * SR], SR)
    sf.write(folder / "b.wav", wav[30 * SR : 50 * SR], SR)
    (folder / "wav.scp").write_text("rec-a a.wav\nrec-b b.wav\n")
    return folder


def test_diarize_wav_scp_to_rttm(audio: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.rttm"
    assert main(["diarize", str(audio / "wav.scp"), "-o", str(out)]) == 0
    result = read_rttm(out)
    assert list(result) == ["rec-a", "rec-b"]
    assert all(1 <= len(a.speakers) <= 3 for a in result.values())
    assert all(t.end <= 20.0 + 1e-6 for a in result.values() for t in a)


def test_formats_speaker_counts_and_plain_files(audio: Path, tmp_path: Path) -> None:
    counts = tmp_path / "reco2num_spk"
    counts.write_text("a 3\n")
    out = tmp_path / "out.vad"
    args = [str(audio / "a.wav"), str(audio / "b.wav"), "--num-speakers", "1", "--reco2num-spk", str(counts)]
    assert main(["diarize", *args, "-o", str(out), "--format", "vad"]) == 0
    result = read_vad(out)
    assert len(result["a"].speakers) == 3 and len(result["b"].speakers) == 1
    pq = tmp_path / "out.parquet"
    assert (
        main(["diarize", str(audio / "a.wav"), "-o", str(pq), "--format", "parquet", "--max-speakers", "1"])
        == 0
    )
    assert read_parquet(pq)["a"].speakers == ["spk1"]


def test_failed_recordings_are_reported_and_the_rest_written(
    audio: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.wav").write_bytes(b"RIFF....not really audio")
    out = tmp_path / "out.rttm"
    code = main(
        [
            "diarize",
            str(audio / "a.wav"),
            str(tmp_path / "broken.wav"),
            str(tmp_path / "gone.wav"),
            "-o",
            str(out),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "2 of 3 recordings failed" in err and "broken" in err and "gone" in err
    assert list(read_rttm(out)) == ["a"]


def test_config_errors_exit_2(audio: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "o.rttm")
    assert main(["diarize", str(audio / "a.wav"), "-o", out, "--set", "clustering.nope=1"]) == 2
    assert "clustering.nope" in capsys.readouterr().err
    assert main(["diarize", str(audio / "a.wav"), "-o", out, "--set", "clustering.method=kmeans"]) == 2
    assert "valid names: agglomerative, spectral" in capsys.readouterr().err
    assert main(["diarize", str(audio / "a.wav"), str(audio / "a.wav"), "-o", out]) == 2
    assert "comes from both" in capsys.readouterr().err
    assert not Path(out).exists()


def test_embed_writes_kaldi_ark_and_scp(
    audio: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kaldiio = pytest.importorskip("kaldiio")
    from diar.models.ge2e import GE2EEmbedder

    enroll = sorted((SAMPLE / "enroll").glob("*.flac"))
    out = tmp_path / "emb" / "xvec.ark"
    assert main(["embed", "--model", "ge2e", *map(str, enroll), str(audio / "wav.scp"), "-o", str(out)]) == 0
    vectors = kaldiio.load_scp(str(tmp_path / "emb" / "xvec.scp"))
    assert list(vectors) == [p.stem for p in enroll] + ["rec-a", "rec-b"]
    # the file's samples less their mean (diar removes every recording's DC offset)
    raw = sf.read(enroll[0], dtype="float32")[0]
    wav = raw - np.float32(np.mean(raw, dtype=np.float64))
    direct = GE2EEmbedder().embed_utterance(wav)
    np.testing.assert_allclose(vectors[enroll[0].stem], direct, atol=1e-5)
    assert main(["embed", "--model", "ge2e", str(enroll[0]), "-o", str(out), "--preprocess"]) == 0
    pre = kaldiio.load_scp(str(tmp_path / "emb" / "xvec.scp"))[enroll[0].stem]
    from diar.models.ge2e import preprocess_wav

    expected = GE2EEmbedder().embed_utterance(preprocess_wav(wav))
    np.testing.assert_allclose(pre, expected, atol=1e-5)
    assert main(["embed", str(enroll[0]), "-o", str(out), "--model", "nope"]) == 2
    assert "valid names" in capsys.readouterr().err


def test_enroll_names_the_enrolled_speakers(audio: Path, tmp_path: Path) -> None:
    """``--enroll`` with the default config (mode frame): the speakers found are matched to the
    enrolled ones and named as enrolled, the others are unknown; a recording without enrollment
    is clustered. A cluster-mode config becomes profile mode, where it fails."""
    enroll = tmp_path / "enroll.scp"
    lines = (SAMPLE / "enroll.scp").read_text().split("\n")
    entries = [line.split() for line in lines if line.strip()]
    enroll.write_text("".join(f"rec-a {spk} {SAMPLE / path}\n" for _, spk, path in entries))
    out = tmp_path / "out.rttm"
    assert main(["diarize", str(audio / "wav.scp"), "-o", str(out), "--enroll", str(enroll)]) == 0
    result = read_rttm(out)
    assert list(result) == ["rec-a", "rec-b"]
    enrolled = {spk for _, spk, _ in entries}
    assert result["rec-a"].speakers and set(result["rec-a"].speakers) <= enrolled | {"unknown1", "unknown2"}
    assert not set(result["rec-b"].speakers) & enrolled
    assert main(["diarize", str(audio / "wav.scp"), "-o", str(out), "--enroll", str(enroll), "--config",
                 str(REPO / "configs" / "ge2e.yaml")]) == 1  # fmt: skip
    assert list(read_rttm(out)) == ["rec-a"]  # profile mode: rec-b has no enrollment and fails


def test_exclusive_option_and_format_keep_one_speaker_at_a_time(audio: Path, tmp_path: Path) -> None:
    """``--exclusive`` (postprocess.exclusive) and ``--format exclusive`` write the same turns,
    never two speakers at once."""
    wav = str(audio / "a.wav")
    chosen, written = tmp_path / "chosen.rttm", tmp_path / "written.rttm"
    assert main(["diarize", wav, "-o", str(chosen), "--exclusive"]) == 0
    assert main(["diarize", wav, "-o", str(written), "--format", "exclusive"]) == 0
    assert chosen.read_bytes() == written.read_bytes()
    turns = read_rttm(chosen)["a"].turns
    assert turns and all(b.start >= a.end for a, b in itertools.pairwise(turns))
