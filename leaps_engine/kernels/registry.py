"""Choose the implementation of the two fused losses: ``triton``, ``compile`` or ``eager``.

``select_kernels(choice, device)`` returns a :class:`LossKernels` holding the two loss functions the
objective calls. On CUDA, ``auto`` tries Triton, then ``torch.compile`` of the pure-torch reference,
then the eager reference, falling back quietly; on the CPU it is eager, because compiling the
references there costs more than it saves (the embedded model's 300-step default takes 3.1 s eager,
5.3 s with ``compile`` and a warm compile cache, 16.5 s with a cold one). An explicit choice that cannot be met raises :class:`LeapsError`. The Triton kernels fuse the JVS priming distance and per-video BN statistics; the
other priming distances (``cos``, ``l1``, ``l2``) and batch-wide BN statistics always use the reference
of the selected backend's fallback (compiled or eager).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from leaps_engine.errors import LeapsError, one_line
from leaps_engine.kernels import bn_stats, priming

PrimingFn = Callable[[torch.Tensor, torch.Tensor, float, str], torch.Tensor]
BnStatsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], torch.Tensor]


@dataclass(frozen=True)
class LossKernels:
    """The selected implementations.

    Attributes:
        backend: ``triton``, ``compile`` or ``eager``, what was actually selected.
        tap_priming: ``(tap [B, C, T', N], target [B, C], weight, distance) -> weight * d [B]``.
        bn_statistics: ``(activation [B, C, T, H, W], running_mean [C], running_var [C], per_video) -> [B]``.
    """

    backend: str
    tap_priming: PrimingFn
    bn_statistics: BnStatsFn


def select_kernels(choice: str, device: torch.device) -> LossKernels:
    """The loss implementations for ``choice`` (``auto``, ``triton``, ``compile``, ``eager``) on ``device``."""
    if choice == "eager":
        return _eager_kernels()
    if choice == "compile":
        problem = _compile_problem()
        if problem:
            raise LeapsError(f"--kernels compile is not available here: {problem}")
        return _compiled_kernels()
    if choice == "triton":
        problem = triton_problem(device)
        if problem:
            raise LeapsError(f"--kernels triton is not available here: {problem}")
        return triton_kernels(_eager_kernels())
    if choice == "auto":
        if device.type != "cuda":
            return _eager_kernels()
        fallback = _eager_kernels() if _compile_problem() else _compiled_kernels()
        return fallback if triton_problem(device) else triton_kernels(fallback)
    raise LeapsError(f"unknown kernels {choice!r}; expected auto, triton, compile or eager")


def triton_problem(device: torch.device) -> str | None:
    """Why the Triton kernels cannot run on ``device``, or ``None`` when they can."""
    if not (priming.TRITON_AVAILABLE and bn_stats.TRITON_AVAILABLE):
        return "the triton package is not installed"
    if device.type == "cuda":
        return None
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
        return None  # the interpreter runs the kernels on CPU tensors (slow; for testing)
    return f"Triton kernels need a CUDA device (on the CPU only under TRITON_INTERPRET=1), got {device.type}"


def _weighted(distance_fn: Callable[..., torch.Tensor]) -> PrimingFn:
    """``weight * distance_fn(tap, target, distance)``; the weight stays outside any compiled graph."""

    def tap_priming(tap: torch.Tensor, target: torch.Tensor, weight: float, distance: str) -> torch.Tensor:
        return weight * distance_fn(tap, target, distance)

    return tap_priming


def _eager_kernels() -> LossKernels:
    return EAGER_KERNELS


EAGER_KERNELS = LossKernels("eager", _weighted(priming.tap_priming_loss_ref), bn_stats.bn_statistics_loss_ref)


def _compiled_kernels() -> LossKernels:
    # dynamic=True: one graph serves every tap shape instead of one recompile per layer.
    return LossKernels(
        "compile",
        _weighted(torch.compile(priming.tap_priming_loss_ref, dynamic=True)),
        torch.compile(bn_stats.bn_statistics_loss_ref, dynamic=True),
    )


def triton_kernels(fallback: LossKernels) -> LossKernels:
    """The fused JVS priming and per-video BN-statistics losses; other cases go to ``fallback``."""
    def tap_priming(tap: torch.Tensor, target: torch.Tensor, weight: float, distance: str) -> torch.Tensor:
        if distance != "jvs":
            return fallback.tap_priming(tap, target, weight, distance)
        return priming.tap_priming_loss_triton(tap, target, weight)

    def bn_statistics(activation: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, per_video: bool) -> torch.Tensor:
        if not per_video:
            return fallback.bn_statistics(activation, mean, var, per_video)
        return bn_stats.bn_statistics_loss_triton(activation, mean, var)

    return LossKernels("triton", tap_priming, bn_statistics)


def _compile_problem() -> str | None:
    """Why ``torch.compile`` cannot compile the references here, or ``None`` (probed on a tiny input)."""
    try:
        probe = torch.compile(priming.tap_priming_loss_ref, dynamic=True)
        probe(torch.ones(2, 3, 2, 2), torch.ones(2, 3), "jvs")
    except Exception as error:  # any compiler failure means: use eager
        return one_line(error)
    return None
