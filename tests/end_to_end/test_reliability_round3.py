"""Issue 23, the reliability matrix, round 3: no silent half-results, no shrinking corpus, scoring
and linking that never lie.

Every case runs the real command (``diar ...`` or ``python -m jobs.diarize`` in this process)
and checks what a user would notice: a recording that cannot be read whole is a failure row
saying why, never half a recording; a bad scoring input is one line with exit code 2 naming
the file, the line and the value; a corpus file never loses recordings; every speaker leaves a
trace. Audio is made here (job_helpers' speech-like tones, or the bundled LibriSpeech sample,
CC BY 4.0, see diar/data/sample/ATTRIBUTION.md); the job tests use job_helpers' energy diarizer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audio_containers import CONTAINERS, SR, zero_rate
from helpers import REPO, TINY_CAMPPLUS
from job_helpers import energy_factory, make_corpus, read_failures_tsv, speechlike

from diar.cli import main as diar_main
from diar.containers import read_header
from diar.formats.rttm import read_rttm
from jobs.diarize import main as job_main

SAMPLE = REPO / "diar" / "data" / "sample" / "sim01_2spk.flac"
DEFAULT_CONFIG = REPO / "configs" / "default.yaml"


def job_argv(scp: Path, out: Path | str, *extra: str) -> list[str]:
    return ["--wav-scp", str(scp), "--out", str(out), "--local", "--no-progress", "--num-shards", "2", *extra]


def one_error_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """The single line the command wrote to stderr; it must contain every needle."""
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err[0]
    assert "Traceback" not in err[0]
    return err[0]


# --------------------------------------------------------------------------- audio

#: Containers whose header declares the length (16-bit PCM, names of audio_containers.CONTAINERS).
DECLARING = ("aiff", "rf64", "w64", "au", "caf", "nist", "wav")


def half_held(path: Path) -> None:
    """Cut ``path`` to the header and the first half of its audio data (the header still
    declares all of it)."""
    data = path.read_bytes()
    header = read_header(path)
    assert header is not None and header.present_bytes is not None and header.data_bytes is not None
    start = len(data) - header.present_bytes
    path.write_bytes(data[: start + header.data_bytes // 2])


@pytest.fixture
def odd_audio(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A wav.scp of two good recordings, a 20 s recording of every declaring container that
    holds only 10 s, and one of each whose header rate is 0; expected message per bad one."""
    folder = tmp_path / "audio"
    scp = make_corpus(folder, {"good-1": 3.0, "good-2": 2.0})
    lines = scp.read_text(encoding="utf-8").splitlines()
    expected: dict[str, str] = {}
    speech = speechlike(20.0, seed=7)
    for name in DECLARING:
        fmt, subtype, ext, container, _ = CONTAINERS[name]
        cut = folder / f"cut.{ext}"
        sf.write(cut, speech, SR, format=fmt, subtype=subtype)
        half_held(cut)
        lines.append(f"cut-{name} {cut}")
        expected[f"cut-{name}"] = (
            f"truncated audio: the {container} header declares {20 * SR} frames, the file holds {10 * SR}"
        )
        zero = folder / f"zero.{ext}"
        sf.write(zero, speech[: 2 * SR], SR, format=fmt, subtype=subtype)
        zero_rate(zero)
        lines.append(f"zero-{name} {zero}")
        expected[f"zero-{name}"] = "implausible sample rate 0 Hz in the header (allowed: 1000 to 768000 Hz)"
    scp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return scp, expected


def test_audio_cut_short_or_with_a_rate_of_zero_is_a_failure_row_in_every_container(
    odd_audio: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    scp, expected = odd_audio
    out = tmp_path / "out"
    code = job_main(job_argv(scp, out, "--set", f"job.max_failures={len(expected)}"), energy_factory())
    assert code == 0
    rows = {r.reco_id: r for r in read_failures_tsv((out / "failures.tsv").read_text(encoding="utf-8"))}
    assert sorted(rows) == sorted(expected)
    for reco_id, message in expected.items():
        row = rows[reco_id]
        assert (row.stage, row.error_type) == ("read", "AudioDecodeError"), row
        assert message in row.message, row
    assert sorted(read_rttm(out / "corpus.rttm")) == ["good-1", "good-2"]
    # one more failure than the budget allows: the job says so
    assert job_main(job_argv(scp, tmp_path / "strict", "--set", "job.max_failures=0"), energy_factory()) == 1


def test_whole_files_of_every_declaring_container_are_diarized(tmp_path: Path) -> None:
    folder = tmp_path / "whole"
    folder.mkdir()
    lines = []
    for name in DECLARING:
        fmt, subtype, ext, _, _ = CONTAINERS[name]
        path = folder / f"a.{ext}"
        sf.write(path, np.stack([speechlike(6.0, seed=3)] * 2, axis=1), SR, format=fmt, subtype=subtype)
        lines.append(f"{name} {path}")
    scp = folder / "wav.scp"
    scp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert job_main(job_argv(scp, out), energy_factory()) == 0
    got = read_rttm(out / "corpus.rttm")
    assert sorted(got) == sorted(DECLARING)
    turns = {name: [(t.start, t.end, t.speaker) for t in got[name].turns] for name in DECLARING}
    assert all(turns[name] == turns["wav"] and turns[name] for name in DECLARING)


# --------------------------------------------------------------------------- scoring inputs

REF_LINES = (
    "SPEAKER r 1 0.000 4.000 <NA> <NA> a <NA> <NA>\n"
    "SPEAKER r 1 4.000 3.000 <NA> <NA> b <NA> <NA>\n"
    "SPEAKER q 1 1.000 2.000 <NA> <NA> a <NA> <NA>\n"
)


def score_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    import json

    assert diar_main(["score", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("side", ["ref", "hyp", "both"])
def test_an_rttm_with_a_byte_order_mark_is_read_whole(
    side: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain, bom = tmp_path / "plain.rttm", tmp_path / "bom.rttm"
    plain.write_text(REF_LINES, encoding="utf-8")
    bom.write_text(REF_LINES, encoding="utf-8-sig")
    ref = bom if side in ("ref", "both") else plain
    hyp = bom if side in ("hyp", "both") else plain
    figures = score_json(capsys, "--ref", str(ref), "--hyp", str(hyp))
    assert figures["der"] == 0.0 and figures["jer"] == 0.0 and figures["total"] == 9.0
    assert sorted(read_rttm(bom)) == ["q", "r"] and read_rttm(bom) == read_rttm(plain)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("onset", "1e400", "onset '1e400' is beyond 1e+09 seconds"),
        ("duration", "1e400", "duration '1e400' is beyond 1e+09 seconds"),
        ("onset", "1e9999999999", "onset '1e9999999999' is beyond"),
        ("duration", "inf", "duration 'inf' is not a finite number"),
        ("onset", "-inf", "onset '-inf' is not a finite number"),
        ("onset", "NaN", "onset 'NaN' is not a finite number"),
        ("duration", "0x10", "duration '0x10' is not a finite number"),
        ("onset", "1_0", "onset '1_0' is not a finite number"),  # Python's float and Decimal take it
        ("duration", "Infinity", "duration 'Infinity' is not a finite number"),
        ("onset", "999999999.5", "the turn ends beyond 1e+09 seconds"),
    ],
)
@pytest.mark.parametrize("side", ["--ref", "--hyp"])
def test_an_rttm_time_that_is_no_time_is_one_line_naming_file_line_and_value(
    field: str, value: str, message: str, side: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good.rttm", tmp_path / "bad.rttm"
    good.write_text(REF_LINES, encoding="utf-8")
    fields = "SPEAKER r 1 2.000 1.000 <NA> <NA> a <NA> <NA>".split()
    fields[3 if field == "onset" else 4] = value
    bad.write_text(REF_LINES + " ".join(fields) + "\n", encoding="utf-8")
    other = "--hyp" if side == "--ref" else "--ref"
    assert diar_main(["score", side, str(bad), other, str(good)]) == 2
    one_error_line(capsys, f"{bad}:4:", message)


def test_a_uem_time_that_is_no_time_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rttm, uem = tmp_path / "ref.rttm", tmp_path / "uem"
    rttm.write_text(REF_LINES, encoding="utf-8")
    uem.write_text("r 1 0 10\nq 1 0 1e400\n", encoding="utf-8")
    assert diar_main(["score", "--ref", str(rttm), "--hyp", str(rttm), "--uem", str(uem)]) == 2
    one_error_line(capsys, f"{uem}:2:", "end '1e400' is beyond")


@pytest.mark.parametrize("what", ["a directory", "a device", "missing", "binary", "unknown type"])
@pytest.mark.parametrize("side", ["--ref", "--hyp"])
def test_a_scoring_input_that_is_no_rttm_is_one_line(
    what: str, side: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.rttm"
    good.write_text(REF_LINES, encoding="utf-8")
    bad = {"a directory": tmp_path, "a device": Path("/dev/zero"), "missing": tmp_path / "gone.rttm"}.get(
        what
    )
    if bad is None:
        bad = tmp_path / "bad.rttm"
        bad.write_bytes(b"\0" * 100_000 if what == "binary" else REF_LINES.encode() + b"SPEAKRE r 1 0 1 x\n")
    expected = {
        "a directory": "is a directory, not an RTTM file",
        "a device": "is a character device, not an RTTM file",
        "missing": "RTTM file does not exist",
        "binary": "line longer than",
        "unknown type": ":4: unknown RTTM line type 'SPEAKRE'",
    }[what]
    other = "--hyp" if side == "--ref" else "--ref"
    assert diar_main(["score", side, str(bad), other, str(good)]) == 2
    one_error_line(capsys, str(bad), expected)


def test_diar_score_with_a_thousand_speakers_in_one_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """3 000 turns of 1 000 speakers: the dense scorer asked for 11.2 GiB and died."""
    rng = np.random.default_rng(0)
    paths = []
    for side in ("ref", "hyp"):
        starts = rng.uniform(0, 3600, 3000).round(3)
        durations = rng.uniform(0.5, 5.0, 3000).round(3)
        labels = np.concatenate([np.arange(1000), rng.integers(0, 1000, 2000)])
        path = tmp_path / f"{side}.rttm"
        path.write_text(
            "".join(
                f"SPEAKER big 1 {s:.3f} {d:.3f} <NA> <NA> {side}{k} <NA> <NA>\n"
                for s, d, k in zip(starts, durations, labels, strict=True)
            ),
            encoding="utf-8",
        )
        paths.append(str(path))
    figures = score_json(capsys, "--ref", paths[0], "--hyp", paths[1], "--collar", "0.25")
    assert 0.0 < float(figures["der"]) and 0.0 < float(figures["jer"]) <= 1.0  # type: ignore[arg-type]
    assert sorted(figures["files"]) == ["big"]  # type: ignore[call-overload]


# --------------------------------------------------------------------------- embeddings of no voice


def test_diar_embed_refuses_what_diar_profiles_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Digital silence, a DC-only file and a 1-sample file have no voice: one failure row each
    (exit 1), the good file still embedded; ``diar profiles`` refuses each of them the same way."""
    import kaldiio

    folder = tmp_path / "audio"
    folder.mkdir()
    speech = sf.read(SAMPLE, dtype="float32")[0][: 3 * SR]
    sf.write(folder / "good.wav", speech, SR, subtype="PCM_16")
    sf.write(folder / "silence.wav", np.zeros(2 * SR, dtype=np.float32), SR, subtype="PCM_16")
    sf.write(folder / "dc.wav", np.full(2 * SR, 0.25, dtype=np.float32), SR, subtype="PCM_16")
    sf.write(folder / "one.wav", np.full(1, 0.5, dtype=np.float32), SR, subtype="PCM_16")
    bad = ("silence", "dc", "one")
    tiny = ["--model", "campplus", "--model-dir", str(TINY_CAMPPLUS), "--device", "cpu"]
    ark = tmp_path / "emb.ark"
    files = [str(folder / f"{name}.wav") for name in ("good", *bad)]
    assert diar_main(["embed", *files, "-o", str(ark), *tiny]) == 1
    err = capsys.readouterr().err
    rows = [line.split("\t") for line in err.splitlines() if line.startswith("  ")]
    assert sorted(r[0].strip() for r in rows) == sorted(bad), err
    for row in rows:
        assert row[1:3] == ["embed", "NoSpeechError"] and "the audio is silent" in row[3], row
    assert "Traceback" not in err
    assert list(kaldiio.load_scp(str(tmp_path / "emb.scp"))) == ["good"]
    for name in bad:
        enroll = tmp_path / f"enroll-{name}.scp"
        enroll.write_text(f"rec spk-{name} {folder / name}.wav\n", encoding="utf-8")
        assert diar_main(["profiles", "--enroll", str(enroll), "--out", str(tmp_path / "p"), *tiny]) == 2
        one_error_line(capsys, f"speaker 'spk-{name}' is silent", f"{name}.wav")


# --------------------------------------------------------------------------- linking


@pytest.fixture(scope="module")
def short_and_long(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two long recordings of the sample's two readers, and 1 s recordings of each reader (less
    than job.link_min_seconds, less than frame_model.embed_min_seconds)."""
    folder = tmp_path_factory.mktemp("linking")
    wav = sf.read(SAMPLE, dtype="float32")[0]
    cuts = {"long-a": (0.0, 36.0), "long-b": (36.0, 73.0), "short-3005": (48.6, 49.6)}
    cuts |= {"short-3331": (29.0, 30.0), "short-3331-half": (30.5, 31.0)}
    lines = []
    for reco_id, (start, end) in cuts.items():
        sf.write(folder / f"{reco_id}.wav", wav[round(start * SR) : round(end * SR)], SR, subtype="PCM_16")
        lines.append(f"{reco_id} {folder / reco_id}.wav")
    (folder / "wav.scp").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "wav.scp"


@pytest.mark.slow
def test_speakers_with_little_speech_leave_a_trace_and_join_a_global_speaker(
    short_and_long: Path, tmp_path: Path
) -> None:
    """The real default pipeline (frame mode): a 1 s recording's speaker has a trace and joins
    the most similar global speaker of the long recordings (it was a global speaker of its own)."""
    from diar.formats.speakers import read_speakers
    from diar.formats.traces import read_traces

    out = tmp_path / "out"
    argv = job_argv(short_and_long, out, "--set", "job.link_speakers=true", "--config", str(DEFAULT_CONFIG))
    assert job_main(argv) == 0
    rows = read_speakers(out / "speakers.tsv")
    speakers = {(a.reco_id, s) for a in read_rttm(out / "corpus.local.rttm").values() for s in a.speakers}
    traced = set()
    for shard in (out / "shards").glob("*.traces.parquet"):
        ark = shard.with_name(shard.name.replace(".parquet", ".ark"))
        traced |= {t.key for t, _ in read_traces(ark.read_bytes(), shard.read_bytes())}
    assert {(r.reco_id, r.speaker) for r in rows} == speakers == traced  # every speaker has a trace
    glob = {r.reco_id: r.global_speaker for r in rows if r.reco_id.startswith("short")}
    long_globals = {r.global_speaker for r in rows if r.reco_id.startswith("long")}
    assert sorted(glob) == ["short-3005", "short-3331", "short-3331-half"]
    assert set(glob.values()) <= long_globals  # joined, none founded a global speaker
    assert glob["short-3331"] == glob["short-3331-half"] != glob["short-3005"]


@pytest.fixture
def finished_job(tmp_path: Path) -> Path:
    """A finished job of 13 recordings in 4 shards (linking off)."""
    scp = make_corpus(tmp_path / "corpus", {f"rec-{i:02d}": 3.0 + i % 4 for i in range(13)})
    out = tmp_path / "out"
    assert job_main(job_argv(scp, out, "--num-shards", "4"), energy_factory()) == 0
    return out


def corpus_state(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}


def test_diar_link_in_place_refuses_an_out_with_an_unfinished_shard(
    finished_job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = finished_job
    (out / "shards" / "shard-00002.done.json").unlink()  # killed before its done record
    before = corpus_state(out)
    assert len(read_rttm(out / "corpus.rttm")) == 13
    assert diar_main(["link", str(out)]) == 2
    one_error_line(capsys, str(out), "1 of 4 shards are not finished (shard-00002)", "rerun the job")
    assert corpus_state(out) == before  # corpus.rttm still has its 13 recordings
    assert diar_main(["link", str(out), "-o", str(out.parent / "elsewhere")]) == 2
    one_error_line(capsys, "shard-00002")
    assert not (out.parent / "elsewhere").exists()


def test_diar_link_output_rules(
    finished_job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = finished_job
    a_file = tmp_path / "speakers.txt"
    a_file.write_text("mine\n", encoding="utf-8")
    assert diar_main(["link", str(out), "-o", str(a_file)]) == 2
    one_error_line(capsys, f"-o {a_file}", "is a regular file, not a folder")
    assert diar_main(["link", str(out), "-o", str(a_file / "sub")]) == 2
    one_error_line(capsys, "cannot create the folder")
    assert a_file.read_text(encoding="utf-8") == "mine\n"
    # another job's folder: its corpus files would be replaced by OUT's recordings
    other = tmp_path / "other"
    scp = make_corpus(tmp_path / "c2", {"x": 3.0, "y": 4.0})
    assert job_main(job_argv(scp, other), energy_factory()) == 0
    before = corpus_state(other)
    assert diar_main(["link", str(out), "-o", str(other)]) == 2
    one_error_line(capsys, "is the output folder of a job")
    assert corpus_state(other) == before
    # a folder of the user's own files
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep\n", encoding="utf-8")
    assert diar_main(["link", str(out), "-o", str(mine)]) == 2
    one_error_line(capsys, "holds files diar link does not write (notes.txt)")
    # new, then the same again (an earlier -o of diar link may be replaced)
    fresh = tmp_path / "linked"
    assert diar_main(["link", str(out), "-o", str(fresh)]) == 0
    first = corpus_state(fresh)
    assert diar_main(["link", str(out), "-o", str(fresh)]) == 0
    assert corpus_state(fresh) == first and len(read_rttm(fresh / "corpus.rttm")) == 13


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        (
            "clustering:\n  method: spectral\nembedding:\n  window: 1.5\nclustering:\n  threshold: 0.5\n",
            5,
            "clustering",
        ),
        ("clustering:\n  method: spectral\n  method: agglomerative\n", 3, "method"),
        ("job:\n  out_formats: [rttm]\n  max_failures: 2\n  max_failures: 0\n", 4, "max_failures"),
        ("embedding: {window: 1.5, window: 2.0}\n", 1, "window"),
    ],
)
def test_a_config_key_given_twice_is_refused_with_file_and_line(
    text: str, line: int, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "dup.yaml"
    config.write_text(text, encoding="utf-8")
    scp = make_corpus(tmp_path / "c", {"a": 2.0})
    out = tmp_path / "out"
    assert diar_main(["diarize", str(scp), "-o", str(tmp_path / "x.rttm"), "--config", str(config)]) == 2
    one_error_line(capsys, f"{config}:{line}: duplicate key '{key}'")
    assert job_main(job_argv(scp, out, "--config", str(config)), energy_factory()) == 2
    one_error_line(capsys, f"{config}:{line}: duplicate key '{key}'")
    assert not out.exists() and not (tmp_path / "x.rttm").exists()


def test_yaml_merge_keys_may_still_be_overridden() -> None:
    """``<<: *base`` then a key of base: YAML's override, not a duplicate."""
    from diar.config import safe_load

    text = "base: &base\n  method: spectral\n  threshold: 0.5\nclustering:\n  <<: *base\n  threshold: 0.7\n"
    assert safe_load(text, "merge.yaml")["clustering"] == {"method": "spectral", "threshold": 0.7}
