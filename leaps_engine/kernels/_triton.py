"""Torch-side plumbing of the fused losses: availability checks, launches from a plan, custom ops.

The kernels are in :mod:`leaps_engine.kernels.triton_kernels` (Triton alone) and what each launch
passes in :mod:`leaps_engine.kernels.launch_plans` (plain Python).
"""

from collections.abc import Callable

import torch
from torch.library import wrap_triton

from leaps_engine.kernels import triton_kernels
from leaps_engine.kernels.launch_plans import Launch
from leaps_engine.kernels.triton_kernels import TRITON_AVAILABLE

INTERPRETED = TRITON_AVAILABLE and type(triton_kernels.priming_jvs_kernel).__name__ == "InterpretedFunction"


def require_triton(entry_point: str, *tensors: torch.Tensor) -> None:
    """Raise a clear RuntimeError when ``entry_point`` cannot launch its kernels on ``tensors``."""
    if not TRITON_AVAILABLE:
        raise RuntimeError(
            f"{entry_point} needs the `triton` package (CUDA builds of torch ship it); "
            "use the pure-torch `*_ref` function instead"
        )
    for tensor in tensors:
        if tensor.device.type != "cuda" and not INTERPRETED:
            raise RuntimeError(
                f"{entry_point} got a tensor on {tensor.device}; it needs CUDA tensors, or "
                "TRITON_INTERPRET=1 set before leaps_engine is imported to run on CPU"
            )


def launch(plan: Launch, values: dict[str, object]) -> None:
    """Launch ``plan`` with its placeholders bound to ``values``.

    Compiled kernels go through ``wrap_triton`` so ``torch.compile`` captures them. ``num_warps`` is not
    passed: the plans use Triton's default (4), and torch.compile's capture would drop launch options.
    Interpreted kernels (``TRITON_INTERPRET=1``) are called directly, as torch >= 2.12's ``wrap_triton``
    does itself (torch 2.11 refuses them).
    """
    kernel = getattr(triton_kernels, plan.kernel)
    if not INTERPRETED:
        kernel = wrap_triton(kernel)
    kernel[plan.grid](*plan.bind(values), **plan.constexprs)


def register_triton_op(
    name: str, fn: Callable, backward: Callable | None = None, setup_context: Callable | None = None
) -> None:
    """Register ``fn`` as ``torch.library.triton_op(name)`` with autograd; a no-op without triton.

    ``triton_op`` also registers ``fn`` as the op's fake (meta) kernel, so ``fn`` may only read shapes,
    strides and dtypes of its inputs, and must launch its kernels through :func:`launch`.
    """
    if not TRITON_AVAILABLE:
        return
    op = torch.library.triton_op(name, mutates_args=())(fn)
    if backward is not None:
        op.register_autograd(backward, setup_context=setup_context)
