"""The diarization job without Ray (``local=True``): outputs, failures, budget, resume, conflicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import REPO, never_built
from job_helpers import DURATIONS, assert_same_files, energy_factory, make_corpus, read_failures_tsv

from diar.config import load_config
from diar.errors import ManifestError
from diar.formats.parquet import read_parquet
from diar.formats.rttm import read_rttm
from jobs.diarize import JobError, main, run_job
from jobs.reduce import allowed_failures


def config(*overrides: str):  # type: ignore[no-untyped-def]
    return load_config(None, ["job.out_formats=[rttm,parquet,vad]", *overrides])


def run_local(cfg, scp: Path | str, out: Path | str, factory, **options):  # type: ignore[no-untyped-def]
    """The job on ``scp`` into ``out``, in this process, with ``factory``'s diarizer."""
    return run_job(cfg, str(scp), str(out), local=True, diarizer_factory=factory, **options)


def rerun(cfg, scp: Path, out: Path, pids: Path):  # type: ignore[no-untyped-def]
    """Run the job into ``out`` again: its report, the recordings it diarized, and its plan."""
    pids.mkdir()
    report = run_local(cfg, scp, out, energy_factory(pid_dir=str(pids)))
    assert report.exit_code == 0
    return report, {p.read_text() for p in pids.iterdir()}, json.loads((out / "job.json").read_text())


@pytest.fixture(scope="module")
def reference(scp: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean one-shard run: the output every other run must reproduce byte for byte."""
    out = tmp_path_factory.mktemp("ref") / "out"
    report = run_local(config("job.num_shards=1"), scp, out, energy_factory())
    assert report.exit_code == 0
    return out


def test_outputs_of_a_clean_run(reference: Path) -> None:
    annotations = read_rttm(reference / "corpus.rttm")
    assert sorted(annotations) == sorted(DURATIONS)
    lines = (reference / "corpus.rttm").read_text(encoding="utf-8").splitlines()
    keys = [(line.split()[1], float(line.split()[3])) for line in lines]
    assert keys == sorted(keys)  # by recording, then start
    assert all(line.split()[2] == "1" for line in lines)
    assert sorted(read_parquet(reference / "corpus.parquet")) == sorted(DURATIONS)
    assert "rec-ü spk1: [" in (reference / "corpus.vad").read_text(encoding="utf-8")
    assert read_failures_tsv((reference / "failures.tsv").read_text()) == []
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert summary["recordings"] == {"total": 6, "done": 6, "failed": 0}
    assert summary["audio_hours"] == pytest.approx(sum(DURATIONS.values()) / 3600, abs=1e-5)
    assert set(summary["step_seconds"]) == {"vad", "cluster"}
    assert summary["real_time_factor"] > 0
    assert summary["shards"] == {"total": 1, "run": 1, "reused": 0, "lost": 0}
    assert (summary["num_actors"], summary["actors_ready"], summary["nodes"]) == (1, 1, 0)
    assert summary["startup_seconds"]["ray"] == 0 and summary["startup_seconds"]["first_actor"] >= 0
    assert 0 < summary["process_seconds"] <= summary["work_seconds"]
    assert summary["config"]["job"]["num_shards"] == 1
    done = json.loads((reference / "shards" / "shard-00000.done.json").read_text())
    assert done["node_id"] is None and done["max_rss_mib"] > 0  # no Ray node in one process
    assert sorted(p.name for p in (reference / "shards").iterdir()) == [
        "shard-00000.done.json",
        "shard-00000.parquet",
        "shard-00000.rttm",
        "shard-00000.traces.ark",  # speaker traces, written whether or not the job links speakers
        "shard-00000.traces.parquet",
    ]
    assert not (reference / "speakers.tsv").exists()  # job.link_speakers is off by default


def test_many_shards_give_byte_identical_corpus_files(scp: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = run_local(config("job.num_shards=4"), scp, out, energy_factory())
    assert report.exit_code == 0 and report.summary["shards"]["total"] == 4
    assert_same_files(out, reference, ("corpus.rttm", "corpus.parquet", "corpus.vad", "failures.tsv"))
    # balanced by duration: 9+3 | 7.5+4 | 6+5 ... each shard's record covers its recordings
    plan = json.loads((out / "job.json").read_text())
    assert sorted(rid for s in plan["shards"] for rid, _ in s["items"]) == sorted(DURATIONS)


def test_rerun_after_a_finished_run_does_no_work_and_changes_nothing(scp: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_local(config("job.num_shards=3"), scp, out, energy_factory()).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    report = run_local(config("job.num_shards=3"), scp, out, never_built)
    assert report.exit_code == 0
    assert (report.shards_run, report.num_actors) == (0, 0)
    after = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # summary.json included: it keeps the figures of the run that did the work
    # a rerun that changes the budget updates the summary's budget, not its timing figures
    report = run_local(config("job.num_shards=3", "job.max_failures=2"), scp, out, never_built)
    assert report.exit_code == 0 and report.shards_run == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failure_budget"]["allowed"] == 2
    assert summary["wall_seconds"] == json.loads(before["summary.json"])["wall_seconds"]


def test_a_replaced_audio_file_makes_only_its_shard_run_again(tmp_path: Path) -> None:
    scp = make_corpus(tmp_path / "corpus", DURATIONS)
    out = tmp_path / "out"
    cfg = config("job.num_shards=3")
    assert run_local(cfg, scp, out, energy_factory()).exit_code == 0
    before = read_rttm(out / "corpus.rttm")
    reco_id, path = scp.read_text(encoding="utf-8").splitlines()[0].split()
    sf.write(path, np.zeros(16000 * 4, dtype=np.float32), 16000, subtype="PCM_16")  # now silent
    report, diarized, plan = rerun(cfg, scp, out, tmp_path / "pids")
    assert report.summary["shards"] == {"total": 3, "run": 1, "reused": 2, "lost": 0}
    (shard,) = [s for s in plan["shards"] if reco_id in {rid for rid, _ in s["items"]}]
    assert diarized == {rid for rid, _ in shard["items"]}
    after = read_rttm(out / "corpus.rttm")
    assert reco_id not in after  # silence has no turns
    assert {k: v.turns for k, v in after.items()} == {k: v.turns for k, v in before.items() if k != reco_id}


def test_resume_redoes_only_unfinished_shards(scp: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = config("job.num_shards=3")
    run_local(cfg, scp, out, energy_factory())
    shards = out / "shards"
    # shard 1: killed before its done record (data file there, record missing)
    (shards / "shard-00001.done.json").unlink()
    # shard 2: killed while writing: only a temporary file, no data, no record
    (shards / "shard-00002.done.json").unlink()
    (shards / "shard-00002.rttm").rename(shards / "shard-00002.rttm.tmp-0123abcd")
    (shards / "shard-00002.parquet").unlink()
    for name in ("corpus.rttm", "summary.json"):
        (out / name).unlink()
    report, diarized, plan = rerun(cfg, scp, out, tmp_path / "pids")
    assert report.summary["shards"] == {"total": 3, "run": 2, "reused": 1, "lost": 0}
    assert diarized == {rid for s in plan["shards"][1:] for rid, _ in s["items"]}
    assert not [p for p in shards.iterdir() if ".tmp-" in p.name]
    assert_same_files(out, reference, ("corpus.rttm", "corpus.parquet", "corpus.vad"))


def test_bad_recordings_become_failure_rows_and_the_others_are_diarized(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    scp = make_corpus(corpus, {"good1": 3.0, "good2": 4.0, "model-fails": 2.0})
    (corpus / "empty.wav").write_bytes(b"")
    (corpus / "text.wav").write_text("this is not audio\n")
    with scp.open("a") as f:
        f.write(
            f"missing {corpus / 'nope.wav'}\nzero-bytes {corpus / 'empty.wav'}\ntext {corpus / 'text.wav'}\n"
        )
    out = tmp_path / "out"
    factory = energy_factory(fail_ids=("model-fails",))
    report = run_local(config("job.num_shards=2", "job.max_failures=4"), scp, out, factory)
    assert report.exit_code == 0  # 4 failures, budget 4
    rows = {f.reco_id: f for f in read_failures_tsv((out / "failures.tsv").read_text())}
    assert sorted(rows) == ["missing", "model-fails", "text", "zero-bytes"]
    assert rows["missing"].stage == "read" and rows["missing"].error_type == "AudioNotFoundError"
    assert "nope.wav" in rows["missing"].message
    assert rows["text"].stage == "read" and "text.wav" in rows["text"].message
    assert rows["model-fails"].stage == "diarize" and rows["model-fails"].error_type == "ValueError"
    assert sorted(read_rttm(out / "corpus.rttm")) == ["good1", "good2"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recordings"] == {"total": 6, "done": 2, "failed": 4}


def test_over_budget_writes_what_finished_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scp = make_corpus(tmp_path / "c", {"good": 3.0}, extra_lines=(f"gone {tmp_path / 'gone.wav'}",))
    out = tmp_path / "out"
    code = main(["--wav-scp", str(scp), "--out", str(out), "--local", "--no-progress"], energy_factory())
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 of 2 recordings failed" in err[0] and "failures.tsv" in err[0]
    assert sorted(read_rttm(out / "corpus.rttm")) == ["good"]
    assert json.loads((out / "summary.json").read_text())["status"] == "over_budget"
    # the same within a fractional budget
    code = main(
        [
            "--wav-scp",
            str(scp),
            "--out",
            str(out),
            "--local",
            "--no-progress",
            "--set",
            "job.max_failures=0.5",
        ],
        energy_factory(),
    )
    assert code == 0


def test_budget_is_a_count_or_a_fraction() -> None:
    assert allowed_failures(0, 10) == 0
    assert allowed_failures(3, 10) == 3
    assert allowed_failures(0.25, 10) == 2
    assert allowed_failures(0.5, 10) == 5
    with pytest.raises(ValueError):
        allowed_failures(-1, 10)


def test_manifest_problems_stop_the_job_before_any_work(tmp_path: Path) -> None:
    scp = make_corpus(tmp_path / "c", {"a": 2.0, "b": 2.0})
    scp.write_text(scp.read_text() + scp.read_text().splitlines()[0] + "\n")
    out = tmp_path / "out"
    with pytest.raises(ManifestError, match=r"wav.scp:3"):
        run_local(config(), scp, out, never_built)
    assert not out.exists()  # nothing written
    # reco2num_spk naming a recording not in wav.scp
    scp2 = make_corpus(tmp_path / "c2", {"a": 2.0})
    r2n = tmp_path / "reco2num_spk"
    r2n.write_text("a 2\nzz 3\n")
    with pytest.raises(ManifestError, match=r"reco2num_spk:2.*'zz'"):
        run_job(
            config(),
            str(scp2),
            str(tmp_path / "o2"),
            reco2num_spk=str(r2n),
            local=True,
            diarizer_factory=never_built,
        )


def test_output_of_another_config_is_refused_unless_overwritten(scp: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_local(config("job.num_shards=2"), scp, out, energy_factory())
    with pytest.raises(JobError, match=r"different config: clustering\.threshold\b"):
        run_job(config("job.num_shards=2", "clustering.threshold=0.7"), str(scp), str(out), local=True)
    with pytest.raises(JobError, match="different sharding"):
        run_job(config("job.num_shards=3"), str(scp), str(out), local=True)
    report = run_job(
        config("job.num_shards=3"),
        str(scp),
        str(out),
        local=True,
        overwrite=True,
        diarizer_factory=energy_factory(),
    )
    assert report.summary["shards"]["run"] == 3
    assert sorted(p.name for p in (out / "shards").glob("*.done.json")) == [
        f"shard-0000{i}.done.json" for i in range(3)
    ]


def test_recording_ids_never_become_paths(tmp_path: Path) -> None:
    scp = make_corpus(tmp_path / "c", {"../../escape": 2.0, "ok": 2.0})
    out = tmp_path / "deep" / "out"
    assert run_local(config(), scp, out, energy_factory()).exit_code == 0
    assert sorted(read_rttm(out / "corpus.rttm")) == ["../../escape", "ok"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "deep"]


def test_fsspec_output_folder(scp: Path, reference: Path) -> None:
    import fsspec

    url = "memory://diar-job-test/out"
    report = run_local(config("job.num_shards=2"), scp, url, energy_factory())
    assert report.exit_code == 0
    with fsspec.open(f"{url}/corpus.rttm", "rb") as f:
        assert f.read() == (reference / "corpus.rttm").read_bytes()


def test_a_model_that_cannot_load_stops_the_job_with_its_cause(
    scp: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from diar.errors import ModelLoadError

    def broken(config):  # type: ignore[no-untyped-def]
        raise ModelLoadError("model dir /nowhere: missing sv.pb")

    code = main(["--wav-scp", str(scp), "--out", str(tmp_path / "out"), "--local", "--no-progress"], broken)
    assert code == 2
    assert "ModelLoadError: model dir /nowhere: missing sv.pb" in capsys.readouterr().err


def test_actor_resources_follow_the_cluster() -> None:
    from diar.config import JobConfig
    from jobs.actors import actor_spec, num_actors_for

    cpu_only = {"CPU": 8.0}
    gpus = {"CPU": 16.0, "GPU": 2.0}
    spec = actor_spec(JobConfig(num_cpus=2), cpu_only)
    assert (spec.num_cpus, spec.num_gpus, spec.num_threads) == (2.0, 0.0, 2)
    assert num_actors_for(JobConfig(num_cpus=2), spec, cpu_only, num_shards=100) == 4
    assert num_actors_for(JobConfig(num_cpus=2), spec, cpu_only, num_shards=3) == 3
    assert num_actors_for(JobConfig(num_cpus=2, num_actors=2), spec, cpu_only, num_shards=100) == 2
    assert num_actors_for(JobConfig(num_cpus=2, num_actors=9), spec, cpu_only, num_shards=100) == 4
    gspec = actor_spec(JobConfig(num_cpus=2), gpus)
    assert gspec.num_gpus == 1.0
    assert num_actors_for(JobConfig(num_cpus=2), gspec, gpus, num_shards=100) == 2
    half = actor_spec(JobConfig(num_cpus=2, num_gpus=0.5), gpus)
    assert num_actors_for(JobConfig(num_cpus=2, num_gpus=0.5), half, gpus, num_shards=100) == 4
    assert actor_spec(JobConfig(num_gpus=0), gpus).num_gpus == 0.0
    assert actor_spec(JobConfig(num_gpus=1), cpu_only).num_gpus == 0.0


def test_an_autoscaling_cluster_is_asked_for_the_actors_the_corpus_needs() -> None:
    from diar.config import JobConfig
    from jobs.actors import actor_spec, num_actors_for

    head_only = {"CPU": 0.0}  # an autoscaling cluster's head: nothing fits yet
    spec = actor_spec(JobConfig(), head_only)
    assert num_actors_for(JobConfig(), spec, head_only, num_shards=7, autoscales=True) == 7
    assert num_actors_for(JobConfig(max_actors=3), spec, head_only, num_shards=7, autoscales=True) == 3
    assert num_actors_for(JobConfig(num_actors=5), spec, head_only, num_shards=7, autoscales=True) == 5
    assert num_actors_for(JobConfig(num_actors=9), spec, head_only, num_shards=7, autoscales=True) == 7
    # a cluster that cannot grow: no more than it holds
    assert num_actors_for(JobConfig(), spec, {"CPU": 2.0}, num_shards=7) == 2
    assert num_actors_for(JobConfig(max_actors=1), spec, {"CPU": 2.0}, num_shards=7) == 1


def test_diar_run_command_is_the_job(
    scp: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``diar run`` finds the job through the 'diar.jobs' entry point and hands it its argv."""
    import jobs.diarize
    from diar.cli import main as diar_main

    real_main = jobs.diarize.main
    seen: list[list[str]] = []

    def main(argv: list[str]) -> int:
        seen.append(argv)
        return real_main(argv, energy_factory())

    monkeypatch.setattr(jobs.diarize, "main", main)
    out = tmp_path / "out"
    argv = ["--wav-scp", str(scp), "--out", str(out), "--local", "--no-progress"]
    argv += ["--set", "job.out_formats=[rttm,parquet,vad]"]
    assert diar_main(["run", *argv]) == 0
    assert seen == [argv]
    assert (out / "corpus.rttm").read_bytes() == (reference / "corpus.rttm").read_bytes()


def test_profile_scp_option_keeps_frame_mode_and_selects_profile_mode_for_cluster(tmp_path: Path) -> None:
    """``--profile-scp`` with the default config keeps mode frame (its identity step matches the
    profiles); a cluster-mode config becomes mode profile, as ``diar diarize`` does."""
    import numpy as np

    from diar.manifests import write_profiles

    scp = make_corpus(tmp_path / "c", {"r1": 5.0})
    profile_scp = write_profiles(tmp_path / "prof" / "", {"r1": (np.ones((2, 4), np.float32), ["ann", "bo"])})
    modes: list[str] = []

    def factory(cfg):  # type: ignore[no-untyped-def]
        modes.append(cfg.mode)
        return energy_factory()(cfg)

    argv = ["--wav-scp", str(scp), "--local", "--no-progress", "--profile-scp", str(profile_scp)]
    assert main([*argv, "--out", str(tmp_path / "out")], factory) == 0
    assert main([*argv, "--out", str(tmp_path / "out2"), "--set", "mode=cluster"], factory) == 0
    assert modes == ["frame", "profile"]
    assert set(read_rttm(tmp_path / "out2" / "corpus.rttm")["r1"].speakers) <= {"ann", "bo"}


def test_speaker_counts_and_profiles_reach_the_diarizer(tmp_path: Path) -> None:
    import numpy as np

    from diar.manifests import write_profiles

    scp = make_corpus(tmp_path / "c", {"r1": 5.0, "r2": 5.0, "r3": 5.0})
    profile_scp = write_profiles(
        tmp_path / "prof" / "",
        {
            "r1": (np.ones((3, 4), np.float32), ["alice", "bob", "carol"]),
            "r2": (np.ones((1, 4), np.float32), ["dave"]),
        },
    )
    r2n = tmp_path / "reco2num_spk"
    r2n.write_text("r3 4\n")
    out = tmp_path / "out"
    report = run_job(
        config(),
        str(scp),
        str(out),
        reco2num_spk=str(r2n),
        profile_scp=str(profile_scp),
        local=True,
        diarizer_factory=energy_factory(),
    )
    assert report.exit_code == 0
    found = read_rttm(out / "corpus.rttm")
    assert set(found["r1"].speakers) == {"alice", "bob", "carol"}
    assert found["r2"].speakers == ["dave"]
    assert set(found["r3"].speakers) <= {"spk1", "spk2", "spk3", "spk4"} and len(found["r3"].speakers) > 2
    # changing a profile changes the job: the old OUT is refused
    write_profiles(
        tmp_path / "prof" / "", {"r1": (np.eye(3, 4, dtype=np.float32), ["alice", "bob", "carol"])}
    )
    with pytest.raises(JobError, match="different manifests"):
        run_job(config(), str(scp), str(out), profile_scp=str(profile_scp), local=True)


def test_profile_manifest_problems_stop_the_job(tmp_path: Path) -> None:
    scp = make_corpus(tmp_path / "c", {"r1": 2.0})
    bad_id = tmp_path / "a.scp"
    bad_id.write_text(f"r1 {tmp_path}/p.ark:0\nstranger {tmp_path}/p.ark:0\n")
    with pytest.raises(ManifestError, match=r"a.scp:2.*'stranger'"):
        run_job(config(), str(scp), str(tmp_path / "o1"), profile_scp=str(bad_id), local=True)
    (tmp_path / "p.ark").write_bytes(b"r1 \x00Bnot an ark")
    bad_offset = tmp_path / "b.scp"
    bad_offset.write_text(f"r1 {tmp_path}/p.ark:999\n")
    with pytest.raises(ManifestError, match=r"b.scp:1"):
        run_job(config(), str(scp), str(tmp_path / "o2"), profile_scp=str(bad_offset), local=True)


def test_default_config_shows_every_job_default() -> None:
    from diar.config import JobConfig

    path = REPO / "configs" / "default.yaml"
    assert load_config(path).job == JobConfig()
    import yaml

    assert set(yaml.safe_load(path.read_text())["job"]) == set(JobConfig.__dataclass_fields__)


def test_durations_for_balancing(tmp_path: Path, http_root: tuple[str, Path]) -> None:
    import soundfile as sf

    from jobs.plan import source_seconds

    base, www = http_root
    sf.write(tmp_path / "a.wav", np.zeros(16000 * 3, np.float32), 16000, subtype="PCM_16")
    sf.write(www / "b.wav", np.zeros(16000 * 2, np.float32), 16000, subtype="PCM_16")
    assert source_seconds(str(tmp_path / "a.wav"), "a", False) == 3.0  # header
    assert source_seconds(f"file://{tmp_path}/a.wav", "a", False) == 3.0
    assert source_seconds(f"{base}/b.wav", "b", False) == pytest.approx(2.0, abs=0.01)  # size
    assert source_seconds("cat x.wav |", "p", True) is None  # never run in the driver
    assert source_seconds(str(tmp_path / "missing.wav"), "m", False) is None


def test_retry_failed_redoes_shards_with_failures(tmp_path: Path) -> None:
    scp = make_corpus(tmp_path / "c", {"a": 3.0, "b": 3.0, "c": 3.0})
    out = tmp_path / "out"
    cfg = config("job.num_shards=3", "job.max_failures=1")
    first = run_local(cfg, scp, out, energy_factory(fail_ids=("b",)))
    assert first.summary["recordings"]["failed"] == 1
    plain = run_local(cfg, scp, out, never_built)
    assert plain.summary["recordings"]["failed"] == 1  # done shards are kept as they are
    retried = run_local(cfg, scp, out, energy_factory(), retry_failed=True)
    assert retried.summary["shards"]["run"] == 1
    assert retried.summary["recordings"] == {"total": 3, "done": 3, "failed": 0}
    assert (out / "failures.tsv").read_text().count("\n") == 1


def test_a_fixed_file_is_diarized_on_the_next_run(tmp_path: Path) -> None:
    import shutil

    scp = make_corpus(tmp_path / "c", {"a": 3.0, "b": 3.0, "c": 3.0})
    broken = tmp_path / "c" / "001.wav"
    good_copy = tmp_path / "b.wav"
    shutil.copy(broken, good_copy)
    broken.write_text("not audio")
    out = tmp_path / "out"
    cfg = config("job.num_shards=3", "job.max_failures=1")
    first = run_local(cfg, scp, out, energy_factory())
    assert first.summary["recordings"]["failed"] == 1
    shutil.copy(good_copy, broken)  # a new size and modification time: its shard is stale
    fixed = run_local(cfg, scp, out, energy_factory())
    assert fixed.summary["shards"] == {"total": 3, "run": 1, "reused": 2, "lost": 0}
    assert fixed.summary["recordings"] == {"total": 3, "done": 3, "failed": 0}


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("job.num_shards=0", "job.num_shards"),
        ("job.max_failures=-1", "job.max_failures"),
        ("job.num_cpus=0", "job.num_cpus"),
        ("job.recording_timeout=0", "job.recording_timeout"),
        ("job.out_formats=[rttm,csv]", "'csv'"),
        ("job.max_actors=0", "job.max_actors"),
        ("job.num_actors=3 job.max_actors=2", r"job.num_actors: 3 .*at most job.max_actors \(2\)"),
    ],
)
def test_bad_job_values_stop_before_any_work(override: str, key: str, scp: Path, tmp_path: Path) -> None:
    from diar.config import ConfigError

    with pytest.raises(ConfigError, match=key):
        run_local(config(*override.split()), scp, tmp_path / "out", never_built)
    assert not (tmp_path / "out").exists()


def test_progress_bar_counts_recordings_and_hours(capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.progress import Progress

    with Progress(10, 7200.0, done_recordings=2, done_seconds=720.0, show=True) as bar:
        bar.partial(1, 360.0)  # inside a running shard
        bar.advance(3, 1080.0, failed=1)  # that shard finished: replaces the partial count
    err = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "0.500/2.000 h audio" in err and "recordings 5/10, 1 failed" in err


def test_two_drivers_never_write_one_output_folder(scp: Path, tmp_path: Path) -> None:
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "a") as held:  # another driver holds OUT
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(JobError, match="another run"):
            run_local(config(), scp, out, never_built)
    # released (as the kernel does when a driver dies): the job runs
    assert run_local(config(), scp, out, energy_factory()).exit_code == 0


def test_crash_journal_blames_a_recording_after_two_crashes(tmp_path: Path) -> None:
    from jobs.records import CrashJournal
    from jobs.storage import OutDir

    out = OutDir(str(tmp_path))
    first = CrashJournal(out, "shard-00000")
    first.start("a")
    first.start("b")  # the process dies here
    second = CrashJournal(out, "shard-00000")  # the retry
    assert second.crashes == {"b": 1} and not second.is_poison("b")
    second.start("a")
    second.start("b")  # dies again
    third = CrashJournal(out, "shard-00000")
    assert third.is_poison("b") and not third.is_poison("a")
    row = third.failure("b")
    assert (row.reco_id, row.stage, row.error_type) == ("b", "actor", "WorkerCrash")
    third.start(None)  # writing outputs: a crash now blames no recording
    assert CrashJournal(out, "shard-00000").crashes == {"b": 2}
    third.close()
    assert not out.exists("shards/shard-00000.inflight.json")


def test_crash_journal_skips_a_timed_out_recording_at_once(tmp_path: Path) -> None:
    from jobs.records import CrashJournal
    from jobs.storage import OutDir

    out = OutDir(str(tmp_path))
    first = CrashJournal(out, "shard-00000")
    first.start("a")
    first.time_out(30.0)  # the actor ends itself here
    retry = CrashJournal(out, "shard-00000")
    assert retry.is_poison("a") and retry.crashes == {}
    row = retry.failure("a")
    assert (row.stage, row.error_type) == ("actor", "RecordingTimeout")
    assert "job.recording_timeout (30 s)" in row.message


def test_time_limit_ends_the_process_once_it_has_said_why(tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap

    said = tmp_path / "said"
    code = textwrap.dedent(
        f"""
        import time
        from jobs.actors import time_limit
        with time_limit(5.0, lambda seconds: None):
            pass  # in time: nothing happens, after the block either
        time.sleep(0.2)
        with time_limit(0.3, lambda seconds: open({str(said)!r}, "w").write(str(seconds))):
            time.sleep(30)
        """
    )
    root = REPO
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, timeout=25, check=False)
    assert proc.returncode == 124
    assert said.read_text() == "0.3"
