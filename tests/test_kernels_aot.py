"""Every fused-loss kernel compiles ahead of time for sm_80 and sm_90, with the signatures, constants and
warps its launchers use for realistic tap and BatchNorm shapes (``tests/kernels_aot.py``), under the
installed Triton and under Triton 3.6, the release beside torch 2.11.

Triton's CPU interpreter, which the other kernel tests use, accepts programs that a GPU compiler
rejects (the fp64 float arguments that ``torch.compile`` passes broke the first GPU run); these tests
run the real compiler down to a cubin, no GPU needed. Triton 3.6 runs in a virtual environment of its
own with nothing else installed (``pip install triton==3.6.0``, about 180 MiB, needs PyPI), created once
per test session; ``LEAPS_ENGINE_TRITON36_PYTHON`` may name an interpreter that already has it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leaps_engine.kernels.triton_kernels import TRITON_AVAILABLE

sys.path.insert(0, str(Path(__file__).parent))
import kernels_aot  # noqa: E402

pytestmark = [pytest.mark.aot,
              pytest.mark.skipif(not TRITON_AVAILABLE, reason="the triton package is not installed")]
TRITON_36 = "3.6.0"


def _jit_functions(kernels) -> dict[str, object]:
    """The ``@triton.jit`` functions of the kernels module: kernels (``*_kernel``) and device helpers."""
    return {name: fn for name, fn in vars(kernels).items() if type(fn).__name__ == "JITFunction"}


def _compile_everything(python: str, *args: str) -> dict:
    """Run ``tests/kernels_aot.py`` with ``python`` (interpreter mode off) and return its summary."""
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    result = subprocess.run([python, str(Path(kernels_aot.__file__)), *args], capture_output=True, text=True,
                            timeout=1800, env=environment)
    assert result.stdout.strip(), result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("arch", kernels_aot.ARCHS)
def test_every_kernel_compiles_with_the_installed_triton(arch):
    """In a fresh interpreter: Triton's interpreter mode, on in this process, changes what it compiles."""
    summary = _compile_everything(sys.executable, "--arch", str(arch))
    assert summary["compilations"] > 150 and not summary["failures"], summary["failures"][:3]


def test_the_compilations_cover_every_kernel_and_both_float_typings():
    jobs, kernels = kernels_aot.all_jobs()
    assert {job.kernel for job in jobs} == {name for name in _jit_functions(kernels) if name.endswith("_kernel")}
    assert {job.arch for job in jobs} == set(kernels_aot.ARCHS)
    assert {job.flavor for job in jobs if job.kernel == "priming_jvs_kernel"} == {"triton", "inductor"}
    assert {dict(job.signature)["x_ptr"] for job in jobs if "x_ptr" in dict(job.signature)} == {
        "*fp32", "*bf16", "*fp16"}


def test_every_device_helper_is_called_by_a_compiled_kernel():
    functions = _jit_functions(kernels_aot.load_module("triton_kernels"))
    kernel_sources = [fn.src for name, fn in functions.items() if name.endswith("_kernel")]
    helpers = [name for name in functions if not name.endswith("_kernel")]
    assert helpers and all(any(f"{helper}(" in source for source in kernel_sources) for helper in helpers)


@pytest.fixture(scope="session")
def triton36_python(tmp_path_factory) -> str:
    """An interpreter with Triton 3.6 and nothing else (no torch)."""
    if os.environ.get("LEAPS_ENGINE_TRITON36_PYTHON"):
        return os.environ["LEAPS_ENGINE_TRITON36_PYTHON"]
    folder = tmp_path_factory.mktemp("triton36")
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
    python = str(folder / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              f"triton=={TRITON_36}"], capture_output=True, text=True, timeout=1200)
    assert install.returncode == 0, f"pip install triton=={TRITON_36} failed: {install.stderr[-2000:]}"
    return python


def test_every_kernel_compiles_with_triton_3_6(triton36_python):
    no_torch = subprocess.run([triton36_python, "-c", "import torch"], capture_output=True, timeout=120)
    assert no_torch.returncode != 0, "the Triton 3.6 environment must not hold torch"
    summary = _compile_everything(triton36_python)
    assert summary["triton"] == TRITON_36
    assert summary["compilations"] > 300 and not summary["failures"], summary["failures"][:3]
