"""The native runners (``native/``, ``CMakeLists.txt``): configure, build and ctest the libtorch runner
against an AOTInductor export of the embedded model, and check its logits against eager.

The build goes to a temporary folder; the TensorRT runner is not built here (no TensorRT).
"""

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHAPE = (2, 3, 8, 32, 32)
SHAPE_ARG = ",".join(map(str, SHAPE))
# cmake and ctest on PATH, or next to this Python (the `cmake` wheel of the dev extra)
CMAKE, CTEST = (shutil.which(tool) or shutil.which(tool, path=str(Path(sys.executable).parent))
                for tool in ("cmake", "ctest"))
LINE = re.compile(r"\| embedded \| 8x32x32 \| batch 2 \| aoti \(libtorch, cpu\) \| "
                  r"forward median (\S+) ms \| p10 (\S+) \| p90 (\S+) \|")


def _missing_tool() -> str | None:
    if CMAKE is None or CTEST is None:
        return "cmake (with ctest) is not installed"
    compilers = [os.environ.get("CXX"), "c++", "g++", "clang++"]
    if not any(name and shutil.which(name) for name in compilers):
        return "no C++ compiler ($CXX, c++, g++ or clang++)"
    return None


MISSING = _missing_tool()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"native runners: {MISSING}")


def run(command: list, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``command``; the result whatever its exit status."""
    return subprocess.run([str(part) for part in command], check=False, capture_output=True, text=True,
                          timeout=timeout)


def described(result: subprocess.CompletedProcess) -> str:
    return f"{' '.join(result.args)}\nexit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def run_ok(command: list, timeout: float = 600) -> subprocess.CompletedProcess:
    result = run(command, timeout)
    assert result.returncode == 0, described(result)
    return result


@dataclass
class Native:
    build: Path
    runner: Path
    package: Path
    input: Path
    expected: Path
    logits: torch.Tensor


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> Native:
    """Export the embedded model at 8x32x32, write a batch-2 input and its eager logits, build the runners."""
    from leaps_engine.engine.adapters import create_adapter
    from leaps_engine.export.aoti import export_aoti
    from leaps_engine.export.graph import graph_spec_for

    root = tmp_path_factory.mktemp("native")
    adapter = create_adapter("embedded")
    package = root / "embedded.pt2"
    export_aoti(adapter, graph_spec_for(adapter, SHAPE[2:]), package, weights="embedded")
    video = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = adapter(video).float()
    video_path, expected_path = root / "input.bin", root / "expected.bin"
    video.numpy().astype("<f4").tofile(video_path)
    logits.numpy().astype("<f4").tofile(expected_path)

    build = root / "build"
    run_ok([CMAKE, "-S", REPO, "-B", build, f"-DPython_EXECUTABLE={sys.executable}",
            f"-DLEAPS_AOTI_PACKAGE={package}", f"-DLEAPS_AOTI_SHAPE={SHAPE_ARG}",
            f"-DLEAPS_AOTI_INPUT={video_path}", f"-DLEAPS_AOTI_EXPECTED={expected_path}"])
    run_ok([CMAKE, "--build", build, "-j", "2"], timeout=1200)
    return Native(build, build / "aoti_runner", package, video_path, expected_path, logits)


def test_ctest_passes(native):
    result = run_ok([CTEST, "--test-dir", native.build, "--output-on-failure"])
    for name in ("aoti_runner_bad_args", "aoti_runner_latency", "aoti_runner_parity"):
        assert name in result.stdout, described(result)
    assert "100% tests passed" in result.stdout, described(result)


def test_runner_logits_match_eager(native, tmp_path):
    dump = tmp_path / "logits.bin"
    run_ok([native.runner, "--package", native.package, "--shape", SHAPE_ARG, "--input", native.input,
            "--dump", dump, "--iters", "1", "--warmup", "0"])
    logits = torch.from_numpy(np.fromfile(dump, dtype="<f4")).reshape(native.logits.shape)
    assert torch.allclose(logits, native.logits, rtol=1e-4, atol=1e-5), (logits - native.logits).abs().max()
    assert torch.equal(logits.argmax(dim=1), native.logits.argmax(dim=1))


def test_runner_prints_a_table_line_last(native):
    result = run_ok([native.runner, "--package", native.package, "--shape", SHAPE_ARG, "--iters", "5",
                     "--warmup", "1"])
    match = LINE.fullmatch(result.stdout.strip().splitlines()[-1])
    assert match, described(result)
    median, p10, p90 = (float(value) for value in match.groups())
    assert 0 < p10 <= median <= p90, described(result)


def test_runner_reports_a_mismatch(native, tmp_path):
    wrong = tmp_path / "wrong.bin"
    (native.logits + 1).numpy().astype("<f4").tofile(wrong)
    result = run([native.runner, "--package", native.package, "--shape", SHAPE_ARG, "--input", native.input,
                  "--expected", wrong])
    assert result.returncode == 1, described(result)
    assert re.fullmatch(r"error: logits differ from .*: max abs error \S+ \(rtol 0\.0001, atol 1e-05\)\n",
                        result.stderr), described(result)


@pytest.mark.parametrize("arguments, message", [
    (["--package", "{missing}", "--shape", SHAPE_ARG], "package not found"),
    (["--package", "{package}"], "--shape is required"),
    (["--package", "{package}", "--shape", "2,3,8,32"], "--shape must be B,3,T,H,W"),
    (["--package", "{package}", "--shape", "2,3,8,32,33"], "does not fit the package"),
    (["--package", "{package}", "--shape", SHAPE_ARG, "--iters", "0"], "--iters must be"),
    (["--package", "{package}", "--shape", SHAPE_ARG, "--threads", "2"], "unknown option --threads"),
])
def test_runner_rejects_bad_arguments(native, tmp_path, arguments, message):
    paths = {"missing": tmp_path / "missing.pt2", "package": native.package}
    result = run([native.runner, *(argument.format(**paths) for argument in arguments)])
    assert result.returncode == 2, described(result)
    assert result.stdout == "", described(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], described(result)
