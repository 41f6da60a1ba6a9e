"""diar.manifests: Kaldi manifests, profile arks (checked against kaldiio) and safe file names."""

from __future__ import annotations

import os
import re
from pathlib import Path

import kaldiio
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diar.errors import ManifestError
from diar.manifests import (
    enrollment_from_list,
    read_enrollment,
    read_profile_scp,
    read_profiles,
    read_reco2num_spk,
    read_uem,
    read_wav_scp,
    reco_id_from_filename,
    reco_id_from_path,
    safe_filename,
    validate_ids,
    write_profiles,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_at(exc: pytest.ExceptionInfo[ManifestError], path: Path, line: int) -> str:
    message = str(exc.value)
    assert exc.value.path == str(path) and exc.value.line == line
    assert f"{path}:{line}" in message
    return message


# --------------------------------------------------------------------------- wav.scp


def test_wav_scp_resolves_relative_paths_against_its_folder(tmp_path: Path, monkeypatch) -> None:
    scp = write(
        tmp_path / "data" / "wav.scp",
        "b audio/b.wav\n\n  a /abs/a.flac\nc https://host/c.wav\nréunion_會議 ../x/r.wav\n",
    )
    monkeypatch.chdir("/")
    got = read_wav_scp(scp)
    assert list(got) == ["b", "a", "c", "réunion_會議"]  # file order
    assert got["b"] == str(tmp_path / "data" / "audio" / "b.wav")
    assert got["a"] == "/abs/a.flac"
    assert got["c"] == "https://host/c.wav"
    assert got["réunion_會議"] == str(tmp_path / "x" / "r.wav")


def test_wav_scp_refuses_pipes_unless_enabled(tmp_path: Path) -> None:
    scp = write(tmp_path / "wav.scp", "a x.wav\nb sox in.flac -t wav - |\n")
    with pytest.raises(ManifestError, match="pipe") as exc:
        read_wav_scp(scp)
    assert "sox in.flac -t wav - |" in error_at(exc, scp, 2)
    assert read_wav_scp(scp, allow_pipes=True)["b"] == "sox in.flac -t wav - |"


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("a a.wav\nlonely\n", 2, "expected 2 fields"),
        ("a a.wav\nb b.wav extra\n", 2, "expected 2 fields"),
        ("a a.wav\nb b.wav\na c.wav\n", 3, "duplicate id 'a' \\(first on line 1\\)"),
    ],
)
def test_wav_scp_errors_name_file_line_and_text(tmp_path: Path, text: str, line: int, what: str) -> None:
    scp = write(tmp_path / "wav.scp", text)
    with pytest.raises(ManifestError, match=what) as exc:
        read_wav_scp(scp)
    message = error_at(exc, scp, line)
    assert repr(text.splitlines()[line - 1]) in message


def test_wav_scp_missing_file_when_checked(tmp_path: Path) -> None:
    (tmp_path / "here.wav").write_bytes(b"")
    scp = write(tmp_path / "wav.scp", "a here.wav\nb gone.wav\n")
    assert len(read_wav_scp(scp)) == 2
    with pytest.raises(ManifestError, match="does not exist") as exc:
        read_wav_scp(scp, check_exists=True)
    error_at(exc, scp, 2)


def test_byte_order_mark_is_not_part_of_the_first_id(tmp_path: Path) -> None:
    scp = tmp_path / "wav.scp"
    scp.write_bytes("a /a.wav\n".encode("utf-8-sig"))
    assert read_wav_scp(scp) == {"a": "/a.wav"}


def test_undecodable_manifest_and_missing_manifest(tmp_path: Path) -> None:
    scp = tmp_path / "wav.scp"
    scp.write_bytes(b"a a.wav\nb \xff\xfe.wav\n")
    with pytest.raises(ManifestError, match="UTF-8") as exc:
        read_wav_scp(scp)
    error_at(exc, scp, 2)
    with pytest.raises(ManifestError, match="does not exist"):
        read_wav_scp(tmp_path / "nope.scp")


@pytest.mark.parametrize("text", ["", "\n\n", "  \n\t\n"])
def test_empty_wav_scp_is_an_error(tmp_path: Path, text: str) -> None:
    scp = tmp_path / "wav.scp"
    scp.write_text(text)
    with pytest.raises(ManifestError, match=r"wav\.scp: no recordings"):
        read_wav_scp(scp)


# --------------------------------------------------------------------------- other tables


@pytest.mark.corpus
def test_corpus_manifests(corpus: Path) -> None:
    sim = corpus / "sim"
    wavs = read_wav_scp(sim / "wav.scp", check_exists=True)
    assert len(wavs) == 10 and all(os.path.isabs(p) for p in wavs.values())
    enroll = read_enrollment(sim / "enroll.scp", check_exists=True)
    assert sum(len(v) for v in enroll.values()) == 29
    num_spk = read_reco2num_spk(sim / "reco2num_spk")
    assert all(len(enroll[r]) == num_spk[r] for r in wavs)
    uem = read_uem(sim / "uem")
    assert uem["sim01_2spk"] == [(0.0, 72.992)]
    validate_ids(sim / "enroll.scp", wavs)


def test_enrollment(tmp_path: Path) -> None:
    path = write(
        tmp_path / "e" / "enroll.scp", "r1 alice a1.wav\nr1 alice a2.wav\nr1 bob b.wav\nr2 c s3://b/c\n"
    )
    got = read_enrollment(path)
    assert got["r1"] == [
        ("alice", str(tmp_path / "e" / "a1.wav")),
        ("alice", str(tmp_path / "e" / "a2.wav")),
        ("bob", str(tmp_path / "e" / "b.wav")),
    ]
    assert got["r2"] == [("c", "s3://b/c")]
    bad = write(tmp_path / "bad.scp", "r1 alice a.wav\nr1 a.wav\n")
    with pytest.raises(ManifestError, match="expected 3 fields") as exc:
        read_enrollment(bad)
    error_at(exc, bad, 2)


def test_enrollment_from_modelscope_list() -> None:
    assert enrollment_from_list(["mix.wav", "a.wav", "b.wav"]) == (
        "mix.wav",
        [("spk1", "a.wav"), ("spk2", "b.wav")],
    )
    with pytest.raises(ValueError, match="at least one enrollment"):
        enrollment_from_list(["mix.wav"])


def test_reco2num_spk(tmp_path: Path) -> None:
    assert read_reco2num_spk(write(tmp_path / "r2n", "a 2\nb 4\n")) == {"a": 2, "b": 4}
    for text in ("a 2\nb two\n", "a 2\nb 0\n", "a 2\nb -1\n", "a 2\nb\n"):
        path = write(tmp_path / "bad", text)
        with pytest.raises(ManifestError) as exc:
            read_reco2num_spk(path)
        error_at(exc, path, 2)


def test_uem(tmp_path: Path) -> None:
    path = write(tmp_path / "uem", "a 1 5.0 9.0\na 1 0.000 3.5\na 1 3.0 4.0\nb 1 0 60\n")
    assert read_uem(path) == {"a": [(0.0, 4.0), (5.0, 9.0)], "b": [(0.0, 60.0)]}
    for text in ("a 1 0 5\na 0 5\n", "a 1 0 5\na 1 5 2\n", "a 1 0 5\na 1 x 5\n", "a 1 0 5\na 1 nan 5\n"):
        bad = write(tmp_path / "bad", text)
        with pytest.raises(ManifestError) as exc:
            read_uem(bad)
        error_at(exc, bad, 2)


def test_validate_ids_names_the_dangling_line(tmp_path: Path) -> None:
    wavs = {"a": "/a.wav", "b": "/b.wav"}
    scp = write(tmp_path / "profile.scp", "a p.ark:3\nzzz p.ark:90\n")
    with pytest.raises(ManifestError, match=r"'zzz' is not in wav\.scp") as exc:
        validate_ids(scp, wavs)
    error_at(exc, scp, 2)


# --------------------------------------------------------------------------- profiles


def random_profiles(seed: int = 0) -> dict[str, tuple[np.ndarray, list[str] | None]]:
    rng = np.random.default_rng(seed)
    return {
        "rec1": (rng.normal(size=(2, 256)).astype(np.float32), ["alice", "bob"]),
        "réunion_會議": (rng.normal(size=(4, 256)).astype(np.float32), None),
        "rec3": (rng.normal(size=(1, 256)).astype(np.float32), ["x"]),
    }


def test_profiles_round_trip_losslessly_and_kaldiio_reads_them(tmp_path: Path, monkeypatch) -> None:
    profiles = random_profiles()
    scp = write_profiles(tmp_path / "out" / "spk", profiles)
    assert scp == tmp_path / "out" / "spk.scp"
    assert (tmp_path / "out" / "spk.ark").is_file()
    assert (tmp_path / "out" / "spk.names").read_text() == "rec1 alice bob\nrec3 x\n"
    monkeypatch.chdir("/")  # scp entries must not depend on the working directory
    independent = kaldiio.load_scp(str(scp))
    for reco_id, (matrix, _) in profiles.items():
        assert independent[reco_id].dtype == np.float32
        np.testing.assert_array_equal(independent[reco_id], matrix)
    with open(tmp_path / "out" / "spk.ark", "rb") as f:
        assert {k: v.tobytes() for k, v in kaldiio.load_ark(f)} == {
            k: m.tobytes() for k, (m, _) in profiles.items()
        }
    got = read_profiles(scp)
    assert list(got) == list(profiles)
    for reco_id, (matrix, names) in profiles.items():
        np.testing.assert_array_equal(got[reco_id][0], matrix)
        assert got[reco_id][1] == (tuple(names) if names else None)


def test_profiles_written_by_kaldiio_are_read(tmp_path: Path) -> None:
    profiles = random_profiles(1)
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'k.ark'},{tmp_path / 'k.scp'}") as writer:
        for reco_id, (matrix, _) in profiles.items():
            writer(reco_id, matrix)
    got = read_profiles(tmp_path / "k.scp")
    for reco_id, (matrix, _) in profiles.items():
        np.testing.assert_array_equal(got[reco_id][0], matrix)
        assert got[reco_id][1] is None


def test_write_profiles_into_a_directory_replaces_old_files(tmp_path: Path) -> None:
    scp = write_profiles(tmp_path, random_profiles(0))
    assert scp == tmp_path / "profile.scp"
    scp = write_profiles(tmp_path, {"only": (np.ones((2, 3), np.float32), None)})
    assert list(read_profiles(scp)) == ["only"]
    assert not (tmp_path / "profile.names").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profile.ark", "profile.scp"]  # no temp files
    with pytest.raises(ValueError, match="whitespace"):
        write_profiles(tmp_path, {"a b": (np.ones((1, 3)), None)})
    with pytest.raises(ValueError, match="2 names"):
        write_profiles(tmp_path, {"a": (np.ones((3, 3)), ["x", "y"])})


def test_unreadable_ark_offset_names_file_line_and_value(tmp_path: Path) -> None:
    good = write_profiles(tmp_path, random_profiles())
    value = read_profile_scp(good)["rec1"]
    ark = value.rsplit(":", 1)[0]
    scp = write(tmp_path / "bad.scp", f"rec1 {value}\nrec2 {ark}:7\n")
    with pytest.raises(ManifestError, match="cannot read ark entry") as exc:
        read_profiles(scp)
    assert f"{ark}:7" in error_at(exc, scp, 2)
    missing = write(tmp_path / "missing.scp", "rec1 nowhere.ark:5\n")
    with pytest.raises(ManifestError) as exc:
        read_profiles(missing)
    error_at(exc, missing, 1)
    no_offset = write(tmp_path / "nooff.scp", "rec1 a.ark\n")
    with pytest.raises(ManifestError, match="byte-offset") as exc:
        read_profile_scp(no_offset)
    error_at(exc, no_offset, 1)


def test_names_file_must_match_the_profiles(tmp_path: Path) -> None:
    scp = write_profiles(tmp_path, random_profiles())
    names = tmp_path / "profile.names"
    names.write_text("rec1 alice\n")
    with pytest.raises(ManifestError, match="1 names for recording 'rec1'"):
        read_profiles(scp)
    names.write_text("rec1 alice bob\nghost a\n")
    with pytest.raises(ManifestError, match="'ghost' is not in") as exc:
        read_profiles(scp)
    error_at(exc, names, 2)


# --------------------------------------------------------------------------- file names


@settings(deadline=None)
@given(st.text(min_size=1, max_size=80))
def test_safe_filename_is_a_plain_reversible_name(reco_id: str) -> None:
    name = safe_filename(reco_id)
    assert re.fullmatch(r"[A-Za-z0-9._%~-]+", name)
    assert not name.startswith(".") and "/" not in name and len(name) <= 200
    if "~" not in name:
        assert reco_id_from_filename(name) == reco_id


@settings(deadline=None)
@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300))
def test_safe_filename_never_collides(a: str, b: str) -> None:
    if a != b:
        assert safe_filename(a) != safe_filename(b)


@pytest.mark.parametrize("reco_id", ["../../x", "..", ".", "/etc/passwd", "a/../../b", "..\\..\\x"])
def test_safe_filename_stays_inside_the_folder(tmp_path: Path, reco_id: str) -> None:
    target = (tmp_path / safe_filename(reco_id)).resolve()
    assert target.parent == tmp_path.resolve()


def test_safe_filename_examples() -> None:
    assert safe_filename("sim01_2spk") == "sim01_2spk"
    assert safe_filename("../../x") == "%2E.%2F..%2Fx"
    assert safe_filename("réunion") == "r%C3%A9union"
    assert safe_filename("100%") == "100%25"
    with pytest.raises(ValueError):
        safe_filename("")


def test_reco_id_from_path() -> None:
    assert reco_id_from_path("/data/sim01_2spk.wav") == "sim01_2spk"
    assert reco_id_from_path("https://host/a/r%C3%A9union.flac") == "réunion"
    assert reco_id_from_path("s3://bucket/x/y.tar.gz") == "y.tar"
