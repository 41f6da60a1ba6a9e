"""Speaker linking in the job's reduce step and ``diar link`` (without Ray: ``local=True``).

The test diarizer (job_helpers.EnergyDiarizer) leaves a trace per speaker: the spectrum of
the tones in its turns, a real (if simple) voice signature of the audio.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import never_built
from job_helpers import energy_factory, make_corpus

from diar.cli import main as diar_main
from diar.config import load_config
from diar.formats.rttm import read_rttm
from diar.formats.speakers import read_speakers
from diar.formats.traces import read_traces
from jobs.diarize import owned_by_job, run_job
from jobs.records import ShardRecord
from jobs.traces import LinkJobError

#: 8 recordings: enough for 7 shards
DURATIONS = {f"rec-{c}": d for c, d in zip("abcdefgh", (9.0, 4.0, 7.5, 3.0, 6.0, 5.0, 8.0, 6.5), strict=True)}
#: what linking writes besides corpus.rttm
LINKED = ("speakers.tsv", "corpus.rttm", "corpus.parquet", "corpus.vad", "corpus.local.rttm")


def config(*overrides: str):  # type: ignore[no-untyped-def]
    return load_config(None, ["job.out_formats=[rttm,parquet,vad]", "job.link_min_seconds=2.0", *overrides])


def run_local(cfg, scp: Path, out: Path, factory=None, **options):  # type: ignore[no-untyped-def]
    report = run_job(
        cfg, str(scp), str(out), local=True, diarizer_factory=factory or energy_factory(), **options
    )
    assert report.exit_code == 0
    return report


@pytest.fixture(scope="module")
def scp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's corpus: eight recordings (the shared ``scp`` fixture has six)."""
    return make_corpus(tmp_path_factory.mktemp("corpus"), DURATIONS)


@pytest.fixture(scope="module")
def linked(scp: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One shard, linking on: the bytes every other way of linking must reproduce."""
    out = tmp_path_factory.mktemp("linked") / "out"
    run_local(config("job.num_shards=1", "job.link_speakers=true"), scp, out)
    return out


@pytest.fixture(scope="module")
def unlinked(scp: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven shards, linking off (the default)."""
    out = tmp_path_factory.mktemp("unlinked") / "out"
    run_local(config("job.num_shards=7"), scp, out)
    return out


def files_of(out: Path, names: tuple[str, ...] = LINKED) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in names}


def test_linked_outputs(linked: Path, unlinked: Path) -> None:
    rows = read_speakers(linked / "speakers.tsv")
    local = read_rttm(linked / "corpus.local.rttm")
    assert {(r.reco_id, r.speaker) for r in rows} == {
        (a, s) for a, ann in local.items() for s in ann.speakers
    }
    assert [(r.reco_id, r.speaker) for r in rows] == sorted((r.reco_id, r.speaker) for r in rows)
    glob = {(r.reco_id, r.speaker): r.global_speaker for r in rows}
    # the local labels are those of the unlinked job; the corpus files carry the global ones
    assert (linked / "corpus.local.rttm").read_bytes() == (unlinked / "corpus.rttm").read_bytes()
    found = read_rttm(linked / "corpus.rttm")
    for reco_id, annotation in local.items():
        assert (
            found[reco_id].turns
            == annotation.rename({s: glob[(reco_id, s)] for s in annotation.speakers}).turns
        )
        assert len(set(found[reco_id].speakers)) == len(annotation.speakers)  # never two in one recording
    assert len({r.global_speaker for r in rows}) < len(rows)  # some speakers recur
    summary = json.loads((linked / "summary.json").read_text())
    assert {"speakers.tsv", "corpus.local.rttm"} <= set(summary["outputs"])
    for r in rows:  # seconds: the speaker's turns
        assert r.seconds == pytest.approx(
            sum(t.end - t.start for t in local[r.reco_id] if t.speaker == r.speaker)
        )


def test_linked_outputs_are_byte_identical_for_1_and_7_shards(
    scp: Path, linked: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    report = run_local(config("job.num_shards=7", "job.link_speakers=true"), scp, out)
    assert report.summary["shards"]["total"] == 7
    assert files_of(out) == files_of(linked)


def test_diar_link_equals_the_jobs_linking(
    scp: Path, linked: Path, unlinked: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "relinked"
    assert diar_main(["link", str(unlinked), "--min-seconds", "2", "-o", str(target)]) == 0
    assert "global speakers" in capsys.readouterr().out
    assert files_of(target) == files_of(linked)
    # in place, as the job's own linking would have written it; the job's rerun without
    # linking then puts its own files back and removes the linking ones
    out = tmp_path / "copy"
    shutil.copytree(unlinked, out)
    before = files_of(out, ("corpus.rttm", "summary.json", "job.json"))
    assert diar_main(["link", str(out), "--min-seconds", "2"]) == 0
    assert files_of(out) == files_of(linked)
    run_local(config("job.num_shards=7"), scp, out, never_built)
    assert files_of(out, ("corpus.rttm", "summary.json", "job.json")) == before
    assert not (out / "speakers.tsv").exists() and not (out / "corpus.local.rttm").exists()


def test_diar_link_settings(linked: Path, tmp_path: Path) -> None:
    # the settings OUT was made with are the default; --threshold changes them
    assert diar_main(["link", str(linked), "-o", str(tmp_path / "same")]) == 0
    assert files_of(tmp_path / "same") == files_of(linked)
    assert diar_main(["link", str(linked), "--threshold", "0", "-o", str(tmp_path / "apart")]) == 0
    rows = read_speakers(tmp_path / "apart" / "speakers.tsv")
    assert len({r.global_speaker for r in rows}) > len(
        {r.global_speaker for r in read_speakers(linked / "speakers.tsv")}
    )
    # --config / --set replace OUT's settings (here: the defaults, linking anyone it may)
    assert diar_main(["link", str(linked), "--set", "job.link_threshold=2", "-o", str(tmp_path / "one")]) == 0
    rows = read_speakers(tmp_path / "one" / "speakers.tsv")
    assert len({r.global_speaker for r in rows}) < len(
        {r.global_speaker for r in read_speakers(linked / "speakers.tsv")}
    )
    assert not (tmp_path / "one" / "corpus.vad").exists()  # the default job.out_formats: rttm, parquet


def test_diar_link_merges_other_folders(tmp_path: Path, linked: Path) -> None:
    # the corpus as two jobs: linked together they give the one job's linking, byte for byte
    scp_all = make_corpus(tmp_path / "corpus", DURATIONS)
    entries = scp_all.read_text(encoding="utf-8").splitlines()
    first, second = tmp_path / "first.scp", tmp_path / "second.scp"
    first.write_text("\n".join(entries[:3]) + "\n", encoding="utf-8")
    second.write_text("\n".join(entries[3:]) + "\n", encoding="utf-8")
    run_local(config("job.num_shards=2"), first, tmp_path / "a")
    run_local(config("job.num_shards=3"), second, tmp_path / "b")
    merged = tmp_path / "merged"
    argv = [
        "link",
        str(tmp_path / "a"),
        "--also",
        str(tmp_path / "b"),
        "--min-seconds",
        "2",
        "-o",
        str(merged),
    ]
    assert diar_main(argv) == 0
    assert files_of(merged) == files_of(linked)


def test_diar_link_refusals(
    unlinked: Path, tmp_path: Path, scp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(*argv: str) -> str:
        assert diar_main(["link", *argv]) == 2
        return capsys.readouterr().err

    assert "with --also, give -o" in fails(str(unlinked), "--also", str(unlinked))
    assert "is in both" in fails(str(unlinked), "--also", str(unlinked), "-o", str(tmp_path / "x"))
    assert "one of the merged folders" in fails(
        str(unlinked), "--also", str(tmp_path / "b"), "-o", str(tmp_path / "b")
    )
    assert "job.json does not exist" in fails(str(tmp_path / "nothing"))
    assert "link_threshold" in fails(str(unlinked), "--threshold", "3")
    with open(unlinked / ".lock", "a") as held:  # a job writing OUT holds its lock
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert "being written by a running job" in fails(str(unlinked), "-o", str(tmp_path / "z"))
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    # a shard made before diar wrote traces
    old = tmp_path / "old"
    run_local(config("job.num_shards=2"), scp, old)
    forget_traces(old, "shard-00001")
    assert "1 finished shards have no speaker traces (shard-00001" in fails(
        str(old), "-o", str(tmp_path / "y")
    )


def forget_traces(out: Path, shard_id: str) -> None:
    """Make a shard look as an earlier diar left it: no trace files, none in its done record."""
    done = out / "shards" / f"{shard_id}.done.json"
    record = ShardRecord.from_json(done.read_text(encoding="utf-8"))
    for name in [f for f in record.files if ".traces." in f]:
        record.files.remove(name)
        del record.digests[name]
        (out / "shards" / name).unlink()
    done.write_text(record.to_json(), encoding="utf-8")


def test_resume_covers_trace_files(scp: Path, linked: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = config("job.num_shards=4", "job.link_speakers=true")
    run_local(cfg, scp, out)
    # a changed trace file makes its shard run again
    ark = out / "shards" / "shard-00002.traces.ark"
    ark.write_bytes(ark.read_bytes()[:-4] + b"\0\0\0\0")
    pids = tmp_path / "pids"
    pids.mkdir()
    report = run_local(cfg, scp, out, energy_factory(pid_dir=str(pids)))
    assert report.summary["shards"] == {"total": 4, "run": 1, "reused": 3, "lost": 0}
    plan = json.loads((out / "job.json").read_text())
    (shard,) = [s for s in plan["shards"] if s["shard_id"] == "shard-00002"]
    assert {p.read_text() for p in pids.iterdir()} == {rid for rid, _ in shard["items"]}
    assert files_of(out) == files_of(linked)
    # a shard without traces (an earlier diar) is kept without linking, redone with it
    forget_traces(out, "shard-00001")
    report = run_local(config("job.num_shards=4"), scp, out, never_built)
    assert report.shards_run == 0
    report = run_local(cfg, scp, out)
    assert report.summary["shards"]["run"] == 1
    assert files_of(out) == files_of(linked)
    traces = read_traces(
        (out / "shards" / "shard-00001.traces.ark").read_bytes(),
        (out / "shards" / "shard-00001.traces.parquet").read_bytes(),
    )
    assert traces and {e for _, e in traces} == {"campplus"}  # the config's embedder
    # trace files are the job's own: --overwrite removes them with the rest
    assert owned_by_job("shards/shard-00001.traces.ark", {"shard-00001"})
    assert owned_by_job("shards/shard-00001.traces.parquet.tmp-0123456789ab", {"shard-00001"})
    assert owned_by_job("speakers.tsv", {"x"}) and owned_by_job("corpus.local.rttm", {"x"})
    run_local(config("job.num_shards=2"), scp, out, overwrite=True)
    assert sorted(p.name for p in (out / "shards").iterdir() if "traces" in p.name) == [
        "shard-00000.traces.ark",
        "shard-00000.traces.parquet",
        "shard-00001.traces.ark",
        "shard-00001.traces.parquet",
    ]


def test_enrolled_names_are_the_global_speakers(tmp_path: Path) -> None:
    from diar.manifests import write_profiles

    scp = make_corpus(tmp_path / "c", {"r1": 6.0, "r2": 6.0, "r3": 4.0})
    profile_scp = write_profiles(
        tmp_path / "prof" / "",
        {
            "r1": (np.ones((2, 4), np.float32), ["alice", "bob"]),
            "r2": (np.ones((2, 4), np.float32), ["bob", "carol"]),
            "r3": (np.ones((1, 4), np.float32), ["alice"]),
        },
    )
    out = tmp_path / "out"
    cfg = config("mode=profile", "job.link_speakers=true", "job.link_threshold=2")  # would merge anyone
    run_local(cfg, scp, out, profile_scp=str(profile_scp))
    rows = read_speakers(out / "speakers.tsv")
    assert rows and all(r.global_speaker == r.speaker for r in rows)
    assert (out / "corpus.rttm").read_bytes() == (out / "corpus.local.rttm").read_bytes()


def test_linking_mixed_embedders_is_refused(unlinked: Path, tmp_path: Path, scp: Path) -> None:
    other = tmp_path / "other"
    lines = scp.read_text(encoding="utf-8").splitlines()
    renamed = tmp_path / "renamed.scp"
    renamed.write_text("".join(f"x{line}\n" for line in lines), encoding="utf-8")
    run_local(config("embedding.name=ge2e"), renamed, other)
    with pytest.raises(LinkJobError, match="different embedders"):
        from jobs.traces import link_folders, settings_of

        link_folders([str(unlinked), str(other)], str(tmp_path / "m"), settings_of(config().job), ["rttm"])


@pytest.mark.slow
@pytest.mark.corpus
def test_linking_the_sim_corpus_with_the_default_model(corpus: Path, tmp_path: Path) -> None:
    """sim: 10 LibriSpeech readers over 10 recordings, each in 2-3 of them."""
    from diar.manifests import read_uem
    from diar.scoring import score

    scp = corpus / "sim" / "wav.scp"
    runs = {}
    for shards in (1, 7):
        out = tmp_path / f"out{shards}"
        cfg = load_config(None, [f"job.num_shards={shards}", "job.link_speakers=true"])
        assert run_job(cfg, str(scp), str(out), local=True).exit_code == 0
        runs[shards] = out
    assert files_of(runs[1], LINKED[:3]) == files_of(runs[7], LINKED[:3])
    rows = read_speakers(runs[7] / "speakers.tsv")
    assert 9 <= len({r.global_speaker for r in rows}) <= 11
    reference, uem = read_rttm(corpus / "sim" / "ref.rttm"), read_uem(corpus / "sim" / "uem")
    linked = score(reference, read_rttm(runs[7] / "corpus.rttm"), uem=uem, collar=0.25, corpus_mapping=True)
    local = score(reference, read_rttm(runs[7] / "corpus.local.rttm"), uem=uem, collar=0.25)
    mean_der = float(np.mean([s.der for s in local.files.values()]))
    assert abs(linked.corpus.der - mean_der) <= 0.03
    assert linked.corpus.der <= local.corpus.der + 0.03
