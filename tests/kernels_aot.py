"""Compile every fused-loss kernel ahead of time for real GPU targets, exactly as the launchers call it.

Torch-free on purpose: it loads ``leaps_engine/kernels/triton_kernels.py`` and ``launch_plans.py`` by
path, so it runs in an environment holding nothing but one Triton release (``test_kernels_aot.py``
runs it under Triton 3.6, the release beside torch 2.11, as well as in-process with the current one).

For each loss input of ``SHAPES`` (taps and BatchNorm inputs of slow_r50, x3d_m, x3d_s and swin3d_b at
their Table 4 sizes, batch 1 and 8, contiguous and channels-last) and each input dtype the launchers
accept, the launch plans give every launch's kernel, arguments, constexprs and ``num_warps``. Triton's
own argument specialisation (``native_specialize_impl``, what its launcher runs) turns the arguments
into the signature, the integer-1 constants and the 16-byte divisibility hints; tensors are stand-ins
with a dtype and an aligned address. Each distinct compilation is done twice: as Triton's launcher
types Python floats (fp32) and as Inductor does inside ``torch.compile`` (fp64). Every compilation must
produce a cubin.

    python tests/kernels_aot.py [--arch 80 --arch 90]   # prints a JSON summary; exit 1 on any failure
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

KERNELS_DIR = Path(__file__).resolve().parents[1] / "leaps_engine" / "kernels"
ARCHS = (80, 90)
FLAVORS = ("triton", "inductor")  # how Python floats reach the kernel: fp32 (Triton's launcher), fp64
DTYPES = ("float32", "bfloat16", "float16")
BATCHES = (1, 8)
ALIGNED_ADDRESS = 1 << 20

# (model, what, C, T, H * W): taps (priming inputs, [B, C, T, H*W]) and BatchNorm inputs (R_feat inputs).
# slow_r50 at 8x224^2, x3d_m at 16x224^2, swin3d_b at 32x224^2 (patch 2x4x4), x3d_s at 13x160^2.
TAPS = [
    ("slow_r50", "stem", 64, 8, 56 * 56), ("slow_r50", "res2", 256, 8, 56 * 56), ("slow_r50", "res3", 512, 8, 28 * 28),
    ("slow_r50", "res4", 1024, 8, 14 * 14), ("slow_r50", "res5", 2048, 8, 7 * 7),
    ("x3d_m", "stem", 24, 16, 112 * 112), ("x3d_m", "res2", 24, 16, 56 * 56), ("x3d_m", "res3", 48, 16, 28 * 28),
    ("x3d_m", "res4", 96, 16, 14 * 14), ("x3d_m", "res5", 192, 16, 7 * 7), ("x3d_m", "pre_act", 432, 16, 7 * 7),
    ("swin3d_b", "stage1", 128, 16, 56 * 56), ("swin3d_b", "stage2", 256, 16, 28 * 28),
    ("swin3d_b", "stage3", 512, 16, 14 * 14), ("swin3d_b", "stage4", 1024, 16, 7 * 7),
]
BN_INPUTS = [
    ("slow_r50", "stem", 64, 8, 112 * 112), ("slow_r50", "res2", 64, 8, 56 * 56), ("slow_r50", "res2", 256, 8, 56 * 56),
    ("slow_r50", "res3", 128, 8, 28 * 28), ("slow_r50", "res3", 512, 8, 28 * 28), ("slow_r50", "res4", 256, 8, 14 * 14),
    ("slow_r50", "res4", 1024, 8, 14 * 14), ("slow_r50", "res5", 512, 8, 7 * 7), ("slow_r50", "res5", 2048, 8, 7 * 7),
    ("x3d_m", "stem", 24, 16, 112 * 112), ("x3d_m", "res2", 54, 16, 56 * 56), ("x3d_m", "res3", 108, 16, 28 * 28),
    ("x3d_m", "res4", 216, 16, 14 * 14), ("x3d_m", "res5", 432, 16, 7 * 7), ("x3d_m", "head", 2048, 1, 1),
    ("x3d_s", "stem", 24, 13, 80 * 80), ("x3d_s", "res2", 54, 13, 40 * 40), ("x3d_s", "res5", 432, 13, 5 * 5),
]
# Swin's tokens are channels-last by nature ([B, T, H, W, C] viewed as [B, C, T, N]); the CNNs' maps are
# contiguous, or channels-last under --channels-last.
LAYOUTS = {"slow_r50": ("contiguous", "channels_last"), "x3d_m": ("contiguous", "channels_last"),
           "x3d_s": ("contiguous", "channels_last"), "swin3d_b": ("channels_last",)}
SAMPLE_FLOATS = {"weight": 0.5}


def load_module(name: str):
    """A module of ``leaps_engine/kernels`` loaded from its file, without the (torch-importing) package,
    and with ``TRITON_INTERPRET`` off, so ``@triton.jit`` gives compilable kernels."""
    spec = importlib.util.spec_from_file_location(f"aot_{name}", KERNELS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    with compiler_mode():
        spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def compiler_mode() -> Iterator[None]:
    """``TRITON_INTERPRET`` unset for the block: Triton reads it when decorating and when compiling."""
    interpret = os.environ.pop("TRITON_INTERPRET", None)
    try:
        yield
    finally:
        if interpret is not None:
            os.environ["TRITON_INTERPRET"] = interpret


class Pointer:
    """What Triton's launcher reads of a tensor: its dtype and its address (16-byte aligned, as torch's)."""

    def __init__(self, dtype: str):
        self.dtype = dtype

    def data_ptr(self) -> int:
        return ALIGNED_ADDRESS


@dataclass(frozen=True)
class Job:
    """One ahead-of-time compilation."""

    kernel: str
    signature: tuple[tuple[str, str], ...]
    constexprs: tuple[tuple[str, int], ...]
    attrs: tuple[tuple[int, str], ...]  # (argument index, Triton's specialisation hint)
    num_warps: int
    arch: int
    flavor: str


def strides(channels: int, length: int, layout: str) -> tuple[int, int, int]:
    """Element strides of a ``[B, C, M]`` view of a contiguous or channels-last activation."""
    return (channels * length, length, 1) if layout == "contiguous" else (channels * length, 1, channels)


def launches(plans, dtype: str) -> list:
    """Every launch the losses make for every shape of the table at ``dtype``."""
    found = []
    for batch in BATCHES:
        for model, _, channels, frames, positions in TAPS:
            for layout in LAYOUTS[model]:
                plan = plans.priming_plan(batch, channels, frames * positions, strides(channels, frames * positions,
                                                                                        layout), dtype)
                found += [plan.partial_sums, plan.jvs]
        for model, _, channels, frames, positions in BN_INPUTS:
            for layout in LAYOUTS[model]:
                length = frames * positions
                layout_strides = strides(channels, length, layout)
                plan = plans.bn_statistics_plan(batch, channels, length, layout_strides, dtype)
                found += [plan.partial_moments, plan.distance,
                          plans.bn_backward_launch(batch, channels, length, layout_strides, layout_strides, dtype)]
    return found


def job_for(launch, kernels, arch: int, flavor: str) -> Job:
    """The compilation Triton's launcher (or Inductor, for ``flavor="inductor"``) does for ``launch``."""
    from triton.backends.compiler import BaseBackend
    from triton.runtime.jit import native_specialize_impl

    values = {name: Pointer(arg.dtype) for name, arg in _placeholders(launch, "TensorArg")}
    values |= {name: SAMPLE_FLOATS[name] for name, _ in _placeholders(launch, "FloatArg")}
    arguments = launch.bind(values)
    fn = getattr(kernels, launch.kernel)
    signature, constexprs, attrs = [], [], []
    for index, name in enumerate(fn.arg_names):
        if name in launch.constexprs:
            signature.append((name, "constexpr"))
            constexprs.append((name, launch.constexprs[name]))
            continue
        argument = arguments[index]
        kind, hint = native_specialize_impl(BaseBackend, argument, False, True, True)
        if kind == "constexpr":  # an integer equal to 1
            constexprs.append((name, hint))
        elif hint:
            attrs.append((index, hint))
        if flavor == "inductor" and isinstance(argument, float):
            kind = "fp64"
        signature.append((name, kind))
    return Job(launch.kernel, tuple(signature), tuple(constexprs), tuple(attrs), launch.num_warps, arch, flavor)


def _placeholders(launch, kind: str):
    return [(arg.name, arg) for arg in launch.args if type(arg).__name__ == kind]


def _has_floats(launch) -> bool:
    return any(isinstance(arg, float) or type(arg).__name__ == "FloatArg" for arg in launch.args)


def compile_job(job: Job, kernels) -> str | None:
    """Compile ``job``; ``None`` when a cubin came out, else why not (one line)."""
    import triton
    from triton.backends.compiler import BaseBackend, GPUTarget
    from triton.compiler import ASTSource

    fn = getattr(kernels, job.kernel)
    source = ASTSource(fn=fn, signature=dict(job.signature), constexprs=dict(job.constexprs),
                       attrs={(index,): BaseBackend.parse_attr(hint) for index, hint in job.attrs})
    try:
        with compiler_mode():
            compiled = triton.compile(source, target=GPUTarget("cuda", job.arch, 32),
                                      options={"num_warps": job.num_warps})
    except Exception as error:  # any compiler failure is the finding
        lines = [line for line in str(error).splitlines() if line.strip()]
        return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:300]
    return None if compiled.asm.get("cubin") else "no cubin produced"


def all_jobs(archs=ARCHS) -> tuple[list[Job], object]:
    """Every distinct compilation, and the loaded kernels module."""
    kernels = load_module("triton_kernels")
    plans = load_module("launch_plans")
    if tuple(plans.INPUT_DTYPES) != DTYPES:
        raise AssertionError(f"the launchers accept {plans.INPUT_DTYPES}, this table covers {DTYPES}")
    jobs = {}
    for dtype in DTYPES:
        for launch in launches(plans, dtype):
            for arch in archs:
                for flavor in FLAVORS:
                    if flavor == "inductor" and not _has_floats(launch):
                        continue  # no float arguments: the same compilation as Triton's launcher
                    job = job_for(launch, kernels, arch, flavor)
                    jobs.setdefault(job, None)
    return list(jobs), kernels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, action="append", help="compute capability x10 (default 80 and 90)")
    args = parser.parse_args(argv)
    import triton

    started = time.perf_counter()
    jobs, kernels = all_jobs(tuple(args.arch or ARCHS))
    failures = [{"job": repr(job), "error": error} for job in jobs if (error := compile_job(job, kernels))]
    summary = {"triton": triton.__version__, "compilations": len(jobs), "failures": failures,
               "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(summary))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
