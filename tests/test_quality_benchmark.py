"""benchmarks/quality.py in its reduced setting: the machinery that produces the committed quality tables."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quality")
    command = [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--classes", "2", "--stimuli", "1",
               "--steps", "2", "--runs", str(folder / "runs"), "--report", str(folder / "quality.md")]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert finished.returncode == 0, finished.stderr[-2000:]
    return folder, (folder / "quality.md").read_text(), command


def test_report_has_every_table_with_every_row(report):
    _, text, _ = report
    for table in ("Table 1: methods", "Table 2: priming distance", "Table 3: objective", "Table S2: priming layers"):
        assert f"## {table}" in text
    for label in ("3D DeepDream", "3D AM", "LEAPS", "L1", "cosine", "JVS", "L_prim + R_coh", "LEAPS (full)", "20%",
                  "100%"):
        assert f"| {label} | 2 |" in text
    assert "Command: `python benchmarks/quality.py --classes 2" in text
    assert "(13 of 13 runs synthesized by this call" in text
    per_class = text.split("## Motion figure per class at the default")[1].split("\n\n")[2].splitlines()[2:]
    assert [line.split(" | ")[0] for line in per_class] == ["| moving right", "| moving left"]


def test_figure_and_resumable_runs(report):
    folder, text, command = report
    assert (folder / "quality.png").stat().st_size > 0 and "(quality.png)" in text
    results = sorted((folder / "runs").glob("*/stimuli_0/result.json"))
    assert len(results) == 13
    stamps = [path.stat().st_mtime_ns for path in results]
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)  # finished runs are skipped
    assert rerun.returncode == 0
    assert [path.stat().st_mtime_ns for path in results] == stamps
    assert "(0 of 13 runs synthesized by this call" in (folder / "quality.md").read_text()


def test_a_run_folder_of_another_setting_stops_the_benchmark(report):
    """A folder named for a setting but holding a run of another (an earlier default's) is never reused."""
    folder, _, command = report
    result_file = folder / "runs" / "distance-l1" / "stimuli_0" / "result.json"
    summary = json.loads(result_file.read_text())
    summary["config"]["distance"] = "cos"
    result_file.write_text(json.dumps(summary))
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert rerun.returncode == 2
    assert rerun.stderr.strip().splitlines()[-1] == (
        f"error: {result_file.parent} holds a run with distance = 'cos', not 'l1': move it away, or give another "
        "--runs folder")


def test_priors_table_has_every_row_the_gradient_sizes_and_the_contact_sheets(tmp_path):
    command = [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--tables", "priors", "--classes", "2",
               "--stimuli", "1", "--steps", "2", "--runs", str(tmp_path / "runs"), "--report", str(tmp_path / "p.md")]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert finished.returncode == 0, finished.stderr[-2000:]
    text = (tmp_path / "p.md").read_text()
    assert "## Space-time priors" in text and "## Table 1: methods" not in text
    for label in ("LEAPS (paper)", "LEAPS + Fourier", "LEAPS + shifts", "LEAPS + shifts and zoom",
                  "LEAPS + Fourier + shifts, spatial decay 1.5", "LEAPS + warp + shifts", "LEAPS + warp + shifts, grid 4",
                  "LEAPS + layers", "LEAPS + layers + shifts",
                  "3D DeepDream (paper)", "3D AM + the default's priors"):
        assert f"| {label} | 2 |" in text
    gradients = [line for line in text.splitlines() if line.startswith("| LEAPS (paper) | first |")]
    assert len(gradients) == 1 and all(float(cell) > 0 for cell in gradients[0].strip("|").split("|")[2:4])
    for figure in ("p_contact_sheets.png", "p_paper_and_default.png", "p_paper_and_default_all_classes.png"):
        assert (tmp_path / figure).stat().st_size > 0 and f"({figure})" in text
