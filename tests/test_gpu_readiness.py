"""What a GPU run and a CUDA user depend on, checked without a GPU: the ``[gpu]`` extra's metadata, the
wheels ``benchmarks/gpu_carry.sh`` prepares, and ``benchmarks/gpu_suite.sh`` end to end on the CPU
(``--dry-run``)."""

import json
import os
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CARRY_LIMIT_BYTES = 10 * 2**20


def _requirements(extra: str) -> dict[str, str]:
    """``name -> environment marker`` of the requirements that ``extra`` adds."""
    found = {}
    for requirement in metadata.metadata("leaps-engine").get_all("Requires-Dist") or []:
        spec, _, marker = requirement.partition(";")
        if f'extra == "{extra}"' in marker:
            name = re.match(r"[A-Za-z0-9_.-]+", spec.strip()).group(0).lower()
            found[name] = marker
    return found


def test_the_gpu_extra_declares_the_cuda_backends_behind_platform_markers():
    gpu = _requirements("gpu")
    assert {"onnx", "onnxscript", "onnxruntime-gpu", "tensorrt-cu13"} <= set(gpu)
    assert "onnxruntime" not in gpu  # onnxruntime-gpu replaces it: both install the same module
    for name in ("onnxruntime-gpu", "tensorrt-cu13"):
        assert "sys_platform" in gpu[name] and "platform_machine" in gpu[name]
    assert "onnxruntime" in _requirements("export")


def test_the_carried_wheels_install_offline_on_the_gpu_machine(tmp_path):
    """pytorchvideo, fvcore and iopath have no wheels on PyPI: the script builds them (needs PyPI)."""
    folder = tmp_path / "whl"
    result = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_carry.sh"), str(folder)], cwd=REPO,
                            env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    wheels = sorted(folder.glob("*.whl"))
    names = {wheel.name.split("-")[0].lower() for wheel in wheels}
    assert names == {"pytorchvideo", "fvcore", "iopath", "termcolor", "yacs"}
    assert sum(wheel.stat().st_size for wheel in wheels) <= CARRY_LIMIT_BYTES
    for wheel in wheels:
        assert wheel.name.endswith("-none-any.whl")  # pure Python: any CPython 3.12, any platform
        with zipfile.ZipFile(wheel) as archive:
            assert any(name.endswith(".dist-info/METADATA") for name in archive.namelist())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_the_suite_without_a_gpu_says_so(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"), "--results", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.strip().startswith("error: no CUDA device")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_the_suite_runs_end_to_end_on_the_cpu(tmp_path):
    """--dry-run: every section at tiny sizes, within its budget; rows it cannot run or reach say why."""
    budget = 90
    result = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_suite.sh"), "--dry-run", "--results", str(tmp_path),
                             "--budget", str(budget)], env={**os.environ, "PYTHON": sys.executable},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_suite_cpu_dry_run.json").read_text())
    assert report["wall_s"] <= budget + 30
    assert {"device", "driver", "torch", "triton", "python"} <= set(report["environment"])
    sections = report["sections"]
    assert sections["copy"]["gbps"] > 0
    assert sections["tests"]["failed"] == 0 and sections["tests"]["errors"] == 0
    assert sections["kernels"]["rows"] and all(row["fwd_bwd_ms"] or row["skipped"] for row in sections["kernels"]["rows"])
    rows = sections["grid"]["rows"]
    assert all(row.get("step_ms") or row.get("skipped") for row in rows)
    first = rows[0]
    assert (first["model"], first["backend"], first["batch"]) == ("embedded", "reference", 1) and first["step_ms"] > 0
    assert {row["skipped"] for row in rows if row["backend"] == "fused" and row.get("skipped")} <= {
        "the Triton kernels need CUDA", "not reached within the suite's time budget"}
    assert [goal["goal"].split(",")[0] for goal in report["goals"]] == [
        "step time", "speed-up over the reference loop", "videos/s at batch 2 over batch 1",
        "priming kernel bandwidth (forward+backward)", "bn_stats kernel bandwidth (forward+backward)"]
    markdown = (tmp_path / "gpu_suite_cpu_dry_run.md").read_text()
    assert "## Goals" in markdown and "## Step latency" in markdown and "## Fused losses" in markdown
    assert result.stdout.strip().splitlines()[-1].startswith("wrote ")
