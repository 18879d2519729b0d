"""A run's output is one unit: interrupted at any phase (SIGTERM, SIGHUP or Ctrl-C), a run leaves either
nothing or a complete result, and says so in one line; a second run on an output in use is refused.

Each run is stopped at a named phase through the hold point (``LEAPS_ENGINE_HOLD_AT``): the process writes
a marker file when it gets there and waits; the test waits for that marker, never for a length of time,
then sends the signal.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

MARKER_TIMEOUT_S = 300
SYNTHESIZE = ["synthesize", "--steps", "2", "--snapshots", "1", "--threads", "1"]
# Every phase of a synthesize run, in order: optimisation, each kind of file, publishing the folder.
SYNTHESIZE_PHASES = ["optimise", "write step_00001.mp4", "write video.mp4", "write video.gif",
                     "write contact_sheet.png", "write video.pt", "write stimulus.pt", "write result.json", "publish out"]


def _command(*args: object) -> list[str]:
    return [sys.executable, "-m", "leaps_engine", *map(str, args)]


def _start_held(command: list[str], phase: str, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """Start ``command`` to stop at ``phase``; wait until it is there."""
    marker = tmp_path / f"held-{phase.replace(' ', '_')}-{time.monotonic_ns()}"
    env = {**os.environ, "LEAPS_ENGINE_HOLD_AT": phase, "LEAPS_ENGINE_HOLD_MARKER": str(marker),
           "RAY_USAGE_STATS_ENABLED": "0"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + MARKER_TIMEOUT_S
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before reaching {phase!r}: {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the run did not reach {phase!r}")
        time.sleep(0.02)  # polling the marker, not timing the run
    return process, marker


def _interrupt(process: subprocess.Popen, signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=MARKER_TIMEOUT_S)
    return process.returncode, stderr


def _complete_result(folder: Path) -> dict:
    """The folder's result.json, after checking that every file it names is there and not empty."""
    summary = json.loads((folder / "result.json").read_text())
    for clip in summary["clips"]:
        for key in ("mp4", "gif", "contact_sheet", "tensor", "stimulus_tensor"):
            assert (folder / clip[key]).stat().st_size > 0, key
        assert all((folder / path).stat().st_size > 0 for path in clip["snapshots"])
    return summary


def _leftovers(parent: Path, name: str) -> list[str]:
    """Hidden staging folders, temporary files and moved-aside folders of output ``name`` (its lock file stays)."""
    found = [p.name for p in parent.glob(f".{name}.*") if p.name != f".{name}.lock"]
    if (parent / name).exists():
        found += [str(p.relative_to(parent)) for p in (parent / name).rglob(".*")]
    return found


@pytest.mark.slow
@pytest.mark.parametrize("phase", SYNTHESIZE_PHASES)
def test_sigterm_at_each_phase_of_a_first_run_leaves_nothing_or_everything(tmp_path, phase):
    out = tmp_path / "out"
    process, _ = _start_held(_command(*SYNTHESIZE, "--out", out), phase, tmp_path)
    code, stderr = _interrupt(process, signal.SIGTERM)
    if phase.startswith("publish"):  # publishing is held until done, then the signal ends the run
        assert _complete_result(out)["config"]["steps"] == 2
    else:
        assert not out.exists()
    assert code == 128 + signal.SIGTERM
    assert stderr.strip().splitlines()[-1] == "error: interrupted (SIGTERM)"
    assert _leftovers(tmp_path, "out") == []


@pytest.mark.slow
@pytest.mark.parametrize(("phase", "signum"), [("optimise", signal.SIGINT), ("write video.gif", signal.SIGHUP),
                                               ("write result.json", signal.SIGTERM),
                                               ("publish out", signal.SIGINT)])
def test_an_interrupted_rerun_keeps_the_earlier_result_whole(tmp_path, phase, signum):
    out = tmp_path / "out"
    first = subprocess.run(_command(*SYNTHESIZE, "--seed", 1, "--out", out), capture_output=True, text=True,
                           timeout=MARKER_TIMEOUT_S)
    assert first.returncode == 0, first.stderr[-2000:]
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    process, _ = _start_held(_command(*SYNTHESIZE, "--seed", 2, "--out", out), phase, tmp_path)
    code, stderr = _interrupt(process, signum)
    assert code == 128 + signum and f"({signal.Signals(signum).name})" in stderr.strip().splitlines()[-1]
    summary = _complete_result(out)
    assert summary["config"]["seed"] == (2 if phase.startswith("publish") else 1)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert _leftovers(tmp_path, "out") == []


def test_a_second_run_on_an_output_in_use_is_refused(tmp_path):
    out = tmp_path / "out"
    held, _ = _start_held(_command(*SYNTHESIZE, "--out", out), "optimise", tmp_path)
    try:
        second = subprocess.run(_command(*SYNTHESIZE, "--out", out), capture_output=True, text=True,
                                timeout=MARKER_TIMEOUT_S)
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"error: {out} is being written by another run; wait for it to finish or choose another output"]
    finally:
        _interrupt(held, signal.SIGTERM)
    assert not out.exists()


def test_an_output_that_is_not_an_earlier_result_is_not_replaced(tmp_path):
    out = tmp_path / "holiday-videos"
    out.mkdir()
    (out / "beach.mp4").write_bytes(b"not ours")
    result = subprocess.run(_command(*SYNTHESIZE, "--out", out), capture_output=True, text=True,
                            timeout=MARKER_TIMEOUT_S)
    assert result.returncode == 2 and "is not an earlier result that may be replaced" in result.stderr
    assert [p.name for p in out.iterdir()] == ["beach.mp4"]


def _jobs_manifest(tmp_path: Path) -> Path:
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("class,seed,steps\n0,1,2\n1,2,2\n")
    return manifest


def _finished_jobs(sweep: Path) -> list[dict]:
    return [_complete_result(path.parent) for path in sorted((sweep / "results").rglob("result.json"))]


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["optimise", "write video.mp4", "write stimulus.pt", "write result.json",
                                   "publish"])
def test_sigterm_at_each_phase_of_a_sweep_leaves_only_complete_jobs(tmp_path, phase):
    manifest = _jobs_manifest(tmp_path)
    sweep = tmp_path / "sweep"
    command = _command("sweep", "run", manifest, "--out", sweep, "--batch-size", 1, "--threads", 1)
    if phase == "publish":  # the first job's folder: its id names it
        from leaps_engine.sweep.manifest import read_manifest

        phase = f"publish {read_manifest(manifest)[0].job_id}"
    process, _ = _start_held(command, phase, tmp_path)
    code, stderr = _interrupt(process, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM and stderr.strip().splitlines()[-1] == "error: interrupted (SIGTERM)"
    finished = _finished_jobs(sweep)
    assert len(finished) == (1 if phase.startswith("publish") else 0)
    assert not any((sweep / ".partial").glob("*"))
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=MARKER_TIMEOUT_S)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(_finished_jobs(sweep)) == 2


@pytest.mark.slow
def test_an_interrupted_export_writes_neither_the_graph_nor_its_sidecar(tmp_path):
    pytest.importorskip("onnxscript")
    out = tmp_path / "model.onnx"
    process, _ = _start_held(_command("export", "--out", out), "write model.onnx.json", tmp_path)
    code, _ = _interrupt(process, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("held-")) == []


def test_an_interrupted_bench_table_is_not_written(tmp_path):
    out = tmp_path / "latency.md"
    command = _command("bench", "--size", "4x16x16", "--backend", "eager", "--iters", 1, "--warmup", 0, "--out", out)
    process, _ = _start_held(command, "write latency.md", tmp_path)
    code, _ = _interrupt(process, signal.SIGHUP)
    assert code == 128 + signal.SIGHUP and not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
