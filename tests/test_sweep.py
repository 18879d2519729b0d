"""Sweeps: manifests, planning, batching, resuming, retrying, the report, and a killed Ray sweep."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from leaps_engine.cli import main
from leaps_engine.errors import LeapsError
from leaps_engine.sweep.batches import PARTIAL_DIR, RESULT_FILE, result_dir
from leaps_engine.sweep.manifest import Job, plan_jobs, read_manifest, write_manifest
from leaps_engine.sweep.runner import LOG_FILE, failure_counts, plan_sweep

STEPS = 4


def _manifest(path: Path, rows: list[str], header: str = "class,seed,steps") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _results(out: Path) -> dict[str, Path]:
    """Job id -> its result.json, for every finished job (asserting there is one folder per id)."""
    found = sorted((out / "results").rglob(RESULT_FILE))
    ids = [path.parent.name for path in found]
    assert len(ids) == len(set(ids)), "a job has two result folders"
    return dict(zip(ids, found, strict=True))


def _video(result_json: Path) -> torch.Tensor:
    summary = json.loads(result_json.read_text())
    return torch.load(result_json.parent / summary["clips"][0]["tensor"], weights_only=True)


# ---- manifests ----------------------------------------------------------------------------------


def test_manifest_round_trips_through_csv_and_jsonl(tmp_path):
    jobs = [Job("growing", seed=3, stimulus=(str(tmp_path / "a.pt"), str(tmp_path / "b.pt")), r=1e-4),
            Job("0", model="embedded", steps=10, size=(8, 16, 16), objective="prim+coh", weights="random")]
    for name in ("m.csv", "m.jsonl"):
        write_manifest(tmp_path / name, jobs)
        assert read_manifest(tmp_path / name) == jobs


def test_job_ids_are_stable_and_tell_jobs_apart():
    assert Job("0", seed=1).job_id == Job("0", seed=1).job_id
    assert len({Job("0", seed=1).job_id, Job("0", seed=2).job_id, Job("1", seed=1).job_id,
                Job("0", seed=1, r=1e-3).job_id}) == 4
    assert Job("0", seed=1).batch_key() == Job("5", seed=9).batch_key() != Job("0", seed=1, steps=3).batch_key()


def test_relative_stimulus_paths_are_resolved_against_the_manifest(tmp_path):
    jobs = read_manifest(_manifest(tmp_path / "m.csv", ["0,1,clips/a.pt|clips/b.pt"], "class,seed,stimulus"))
    assert jobs[0].stimulus == (str(tmp_path / "clips" / "a.pt"), str(tmp_path / "clips" / "b.pt"))


@pytest.mark.parametrize(("header", "row", "message"), [
    ("class,seed", "0,x", "m.csv:2: bad seed 'x'"),
    ("seed", "1", "m.csv:2: the job has no class"),
    ("class,colour", "0,red", "unknown manifest column(s) colour"),
    ("class,size", "0,8x16", "m.csv:2: bad size '8x16'"),
    ("class,seed", "0,1,2", "m.csv:2: more cells than the header has columns"),
])
def test_bad_manifest_rows_are_named(tmp_path, header, row, message):
    with pytest.raises(LeapsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_manifest(_manifest(tmp_path / "m.csv", [row], header))


def test_a_manifest_that_is_not_text_is_named(tmp_path):
    (tmp_path / "m.csv").write_bytes(b"class,seed\n\xff\xfe,1\n")
    with pytest.raises(LeapsError, match="is not UTF-8 text"):
        read_manifest(tmp_path / "m.csv")


def test_bad_jsonl_lines_are_named(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"class": "0"}\nnot json\n')
    with pytest.raises(LeapsError, match="m.jsonl:2: not JSON"):
        read_manifest(path)


def test_plan_crosses_class_folders_models_and_seeds(tmp_path):
    for label, count in (("growing", 2), ("moving up", 1)):
        (tmp_path / "stimuli" / label).mkdir(parents=True)
        for index in range(count):
            torch.save(torch.rand(3, 8, 32, 32), tmp_path / "stimuli" / label / f"clip{index}.pt")
    (tmp_path / "stimuli" / "growing" / "notes.txt").write_text("not a stimulus")
    jobs = plan_jobs(tmp_path / "stimuli", ["embedded"], [0, 1], settings={"steps": 5})
    assert len(jobs) == 6 and {job.label for job in jobs} == {"growing", "moving up"}
    assert all(job.steps == 5 and len(job.stimulus) == 1 for job in jobs)


def test_plan_reads_classes_from_a_labels_file(tmp_path):
    torch.save(torch.rand(3, 8, 32, 32), tmp_path / "a.pt")
    (tmp_path / "labels.csv").write_text("path,class\na.pt,orbiting\n")
    (job,) = plan_jobs(tmp_path, ["embedded"], [7], labels_csv=tmp_path / "labels.csv")
    assert job.label == "orbiting" and job.seed == 7 and job.stimulus == (str(tmp_path / "a.pt"),)


def test_plan_cli_writes_a_manifest_and_rejects_unknown_models(tmp_path):
    (tmp_path / "stimuli" / "bouncing").mkdir(parents=True)
    torch.save(torch.rand(3, 8, 32, 32), tmp_path / "stimuli" / "bouncing" / "a.pt")
    runner = CliRunner()
    result = runner.invoke(main, ["sweep", "plan", str(tmp_path / "stimuli"), "--seed", "1", "--seed", "2",
                                  "--steps", "3", "--out", str(tmp_path / "m.jsonl")])
    assert result.exit_code == 0, result.output
    assert [job.seed for job in read_manifest(tmp_path / "m.jsonl")] == [1, 2]
    result = runner.invoke(main, ["sweep", "plan", str(tmp_path / "stimuli"), "--model", "r3d_99",
                                  "--out", str(tmp_path / "n.csv")])
    assert result.exit_code == 2 and "r3d_99" in result.output and not (tmp_path / "n.csv").exists()


# ---- planning and running in this process ---------------------------------------------------------


def test_plan_sweep_groups_by_settings_and_drops_duplicates(tmp_path):
    jobs = [Job(str(i % 12), seed=i) for i in range(5)] + [Job("0", seed=0)] + [Job("1", seed=1, steps=2)] * 2
    plan = plan_sweep(jobs, tmp_path, batch_size=2, max_attempts=3)
    assert [len(batch) for batch in plan.batches] == [2, 2, 1, 1]
    assert plan.to_run == 6 and not plan.finished


def test_in_process_sweep_resumes_and_never_retries_invalid_input(tmp_path):
    manifest = _manifest(tmp_path / "m.csv", [f"{i},{i},{STEPS}" for i in range(3)] + [f"not a class,9,{STEPS}"])
    out = tmp_path / "sweep"
    runner = CliRunner()
    arguments = ["sweep", "run", str(manifest), "--out", str(out), "--batch-size", "2", "--max-attempts", "2"]
    first = runner.invoke(main, arguments)
    assert first.exit_code == 1 and "unknown class 'not a class'" in first.output
    assert "(invalid input: not retried)" in first.output
    results = _results(out)
    assert len(results) == 3
    summary = json.loads(next(iter(results.values())).read_text())
    assert summary["job"]["id"] == next(iter(results)) and summary["config"]["steps"] == STEPS
    stamps = {path: path.stat().st_mtime_ns for path in results.values()}

    (out / PARTIAL_DIR / "leftover-of-a-killed-sweep").mkdir(parents=True)
    second = runner.invoke(main, arguments)  # the invalid job is not tried again
    assert second.exit_code == 1 and "3 finished earlier, 1 given up" in second.output and "0 to run" in second.output
    assert {path: path.stat().st_mtime_ns for path in _results(out).values()} == stamps  # nothing rewritten
    assert not (out / PARTIAL_DIR / "leftover-of-a-killed-sweep").exists()
    log = [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]
    assert [entry["status"] for entry in log].count("done") == 3
    assert [entry["status"] for entry in log if entry["status"] != "done"] == ["invalid"]
    assert list(failure_counts(out).values()) == [sys.maxsize]


def test_a_job_that_fails_for_another_reason_is_retried_up_to_max_attempts(tmp_path, monkeypatch):
    from leaps_engine.sweep import batches

    def out_of_memory(model, targets, **options):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(batches, "synthesize", out_of_memory)
    manifest = _manifest(tmp_path / "m.csv", [f"0,1,{STEPS}"])
    arguments = ["sweep", "run", str(manifest), "--out", str(tmp_path / "sweep"), "--max-attempts", "2"]
    runs = [CliRunner().invoke(main, arguments) for _ in range(3)]
    assert ["1 to run" in run.output for run in runs] == [True, True, False]
    assert "1 given up" in runs[2].output
    assert list(failure_counts(tmp_path / "sweep").values()) == [2]


def test_a_job_failing_inside_a_batch_fails_alone(tmp_path, monkeypatch):
    from leaps_engine.sweep import batches

    synthesize = batches.synthesize

    def refuse_seed_13(model, targets, **options):  # an engine error that only one job's video meets
        if any(target.seed == 13 for target in targets):
            raise RuntimeError("out of memory")
        return synthesize(model, targets, **options)

    monkeypatch.setattr(batches, "synthesize", refuse_seed_13)
    jobs = [Job(str(index), seed=11 + index, steps=STEPS) for index in range(4)]
    outcomes = batches.run_batch(jobs, tmp_path)
    assert [outcome.status for outcome in outcomes] == ["done", "done", "failed", "done"]
    assert outcomes[2].error == "out of memory"
    assert len(_results(tmp_path)) == 3


def test_a_log_line_torn_by_a_kill_hides_no_later_failure(tmp_path):
    manifest = _manifest(tmp_path / "m.csv", [f"not a class,1,{STEPS}"])
    out = tmp_path / "sweep"
    out.mkdir()
    (out / LOG_FILE).write_text('{"time": "2026-01-01T00:00:00", "job": "0123')  # killed mid-line
    arguments = ["sweep", "run", str(manifest), "--out", str(out), "--max-attempts", "1"]
    assert CliRunner().invoke(main, arguments).exit_code == 1
    assert list(failure_counts(out).values()) == [sys.maxsize]  # the entry after the torn line was read
    assert "0 to run" in CliRunner().invoke(main, arguments).output


def test_sweep_results_equal_synthesizing_each_job_alone(tmp_path, model, verifier):
    from leaps_engine import SynthesisConfig, Target, synthesize
    from leaps_engine.engine.embedded.generator import generate_stimulus

    jobs = [Job(str(label), seed=seed, steps=STEPS) for label, seed in ((3, 11), (7, 12))]
    write_manifest(tmp_path / "m.csv", jobs)
    result = CliRunner().invoke(main, ["sweep", "run", str(tmp_path / "m.csv"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for job in jobs:
        label = int(job.label)
        alone = synthesize(model, [Target(label, generate_stimulus(label, seed=job.seed), seed=job.seed)],
                           verifier=verifier, config=SynthesisConfig.from_preset("embedded", steps=STEPS))
        swept = _video(result_dir(tmp_path / "out", job) / RESULT_FILE)
        # Batched float sums differ from a lone run's by ~1e-6 (the layers default: at most 3e-6 after 4
        # steps, docs/method.md).
        difference = (swept - alone.videos[0]).abs()
        assert difference.max() <= 1e-4


def test_sweep_report_scores_every_finished_job(tmp_path):
    _manifest(tmp_path / "m.csv", [f"{i},{i},{STEPS}" for i in range(2)] + [f"0,5,{STEPS},am"],
              "class,seed,steps,method")
    runner = CliRunner()
    run = runner.invoke(main, ["sweep", "run", str(tmp_path / "m.csv"), "--out", str(tmp_path / "out"), "--report"])
    assert run.exit_code == 0, run.output
    page = (tmp_path / "out" / "report.html").read_text()  # --report: the HTML page of every finished job
    assert page.count('<section class="run"') == 3 and 'id="comparison"' in page and "method=am" in page
    result = runner.invoke(main, ["sweep", "report", str(tmp_path / "out"), "--format", "json",
                                  "--out", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    rows = {row["method"]: row for row in json.loads((tmp_path / "report.json").read_text())}
    assert rows["leaps"]["n_videos"] == 2 and rows["am"]["n_videos"] == 1
    assert rows["leaps"]["model"] == "embedded" and 0 <= rows["leaps"]["top1_model"] <= 100


@pytest.mark.parametrize("arguments", [
    ["sweep", "run", "missing.csv", "--out", "o"],
    ["sweep", "run", "m.txt", "--out", "o"],
    ["sweep", "report", "nowhere"],
])
def test_sweep_input_errors_are_one_line(tmp_path, arguments, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.txt").write_text("class\n0\n")
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 2 and result.output.count("\n") == 1 and result.output.startswith("error:")


# ---- a local Ray cluster, killed part-way -----------------------------------------------------------


def _sweep_command(manifest: Path, out: Path, *extra: str) -> list[str]:
    """``sweep run`` with one torch thread, so the result does not depend on the machine or its load."""
    return [sys.executable, "-m", "leaps_engine", "sweep", "run", str(manifest), "--out", str(out), "--threads", "1",
            *extra]


@pytest.mark.slow
def test_ray_sweep_killed_part_way_completes_on_rerun_like_in_process(tmp_path):
    pytest.importorskip("ray")
    jobs = [Job(str(index), seed=100 + index, steps=40) for index in range(12)]
    write_manifest(tmp_path / "m.csv", jobs)
    ray_out, local_out = tmp_path / "ray", tmp_path / "local"
    ray_options = ("--ray-address", "local", "--local-cpus", "2", "--cpus-per-task", "1", "--batch-size", "1")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}

    sweep = subprocess.Popen(_sweep_command(tmp_path / "m.csv", ray_out, *ray_options), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(_results(ray_out)) < 3 and sweep.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    finished_before_kill = len(_results(ray_out))
    os.killpg(sweep.pid, signal.SIGKILL)  # the sweep, its local Ray cluster and its workers
    sweep.wait()
    assert 3 <= finished_before_kill < len(jobs), "the sweep was not killed part-way"

    rerun = subprocess.run(_sweep_command(tmp_path / "m.csv", ray_out, *ray_options), env=env, capture_output=True,
                           text=True, timeout=600, start_new_session=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "finished earlier" in rerun.stdout
    local = subprocess.run(_sweep_command(tmp_path / "m.csv", local_out, "--batch-size", "1"), capture_output=True,
                           text=True, timeout=600)
    assert local.returncode == 0, local.stderr[-2000:]

    ray_results, local_results = _results(ray_out), _results(local_out)
    assert set(ray_results) == set(local_results) == {job.job_id for job in jobs}
    for job_id, path in ray_results.items():
        torch.testing.assert_close(_video(path), _video(local_results[job_id]), atol=0, rtol=0)  # same threads
        assert json.loads(path.read_text())["threads"] == json.loads(local_results[job_id].read_text())["threads"] == 1
        clip = json.loads(path.read_text())["clips"][0]
        assert Path(path.parent / clip["mp4"]).stat().st_size > 0
    assert not any((ray_out / PARTIAL_DIR).glob("*")), "leftovers of the killed sweep remain"


def test_a_batch_decodes_each_stimulus_once(tmp_path, monkeypatch):
    from leaps_engine.engine import stimulus as stimulus_module
    from leaps_engine.engine.embedded.generator import generate_stimulus
    from leaps_engine.sweep import batches

    paths = []
    for index in range(2):
        paths.append(tmp_path / f"clip{index}.pt")
        torch.save(generate_stimulus(index, seed=index), paths[-1])
    decoded = []
    real_load = stimulus_module._load_tensor_file
    monkeypatch.setattr(stimulus_module, "_load_tensor_file", lambda path: decoded.append(path) or real_load(path))
    jobs = [Job(str(index), stimulus=(str(path),), seed=index, steps=STEPS) for index, path in enumerate(paths)]
    outcomes = batches.run_batch(jobs, tmp_path / "out")
    assert [outcome.status for outcome in outcomes] == ["done", "done"]
    assert sorted(decoded) == sorted(paths)
