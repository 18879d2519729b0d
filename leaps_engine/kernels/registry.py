"""Choose the implementation of the two fused losses: ``triton``, ``compile`` or ``eager``.

``select_kernels(choice, device)`` returns a :class:`LossKernels` holding the two loss functions the
objective calls. On the CPU ``auto`` is eager, because compiling the references there costs more than
it saves (the embedded model's 300-step default takes 3.1 s eager, 5.3 s with ``compile`` and a warm
compile cache, 16.5 s with a cold one). On CUDA ``auto`` is Triton with a fallback (``compile`` of the
pure-torch reference, or eager where torch.compile does not work), and protects the user: the first
call of each fused loss for each new input (shape, strides, dtype) is checked against the reference on
that very input, value and input gradient; a failure or an exception warns once, in one line, and the
fallback serves the rest of the process. That record (:func:`triton_fallback_reason`) is the only state
this module keeps. An explicit choice that cannot be met raises :class:`LeapsError`; an explicit
``triton`` is never checked or replaced. The Triton kernels fuse the JVS priming distance and
per-video BN statistics; the other priming distances (``cos``, ``l1``, ``l2``) and batch-wide BN
statistics always use the fallback.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from leaps_engine.errors import LeapsError, one_line
from leaps_engine.kernels import bn_stats, priming
from leaps_engine.kernels.triton_kernels import TRITON_AVAILABLE

PrimingFn = Callable[[torch.Tensor, torch.Tensor, float, str], torch.Tensor]
BnStatsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], torch.Tensor]


# (rtol, atol as a fraction of the largest reference value) of the first-use check, per input dtype: the
# fused and the reference losses both accumulate in float32; gradients come back in the input's dtype.
FIRST_USE_TOLERANCES = {torch.float32: (1e-4, 1e-5), torch.bfloat16: (2e-2, 1e-2), torch.float16: (5e-3, 2e-3)}

# Why the fused kernels failed a first-use check in this process; None while they have not.
_triton_failure: str | None = None


class KernelFallbackWarning(UserWarning):
    """``--kernels auto`` dropped the fused Triton kernels for the rest of the process."""


@dataclass(frozen=True)
class LossKernels:
    """The selected implementations.

    Attributes:
        backend: ``triton``, ``compile`` or ``eager``, what was selected (see :meth:`in_use`).
        tap_priming: ``(tap [B, C, T', N], target [B, C], weight, distance) -> weight * d [B]``.
        bn_statistics: ``(activation [B, C, T, H, W], running_mean [C], running_var [C], per_video) -> [B]``.
        fallback: for ``auto`` on CUDA, what serves once a first-use check has failed; its calls are
            checked (eagerly: under ``torch.compile`` the caller runs one eager pass first).
    """

    backend: str
    tap_priming: PrimingFn
    bn_statistics: BnStatsFn
    fallback: LossKernels | None = None

    @property
    def checks_first_use(self) -> bool:
        """Whether calls are checked against the reference on first use of each input."""
        return self.fallback is not None

    def in_use(self) -> tuple[str, str | None]:
        """``(backend serving calls now, why the fused kernels were dropped or None)``."""
        if self.fallback is not None and _triton_failure is not None:
            return self.fallback.backend, _triton_failure
        return self.backend, None


def triton_fallback_reason() -> str | None:
    """Why ``auto`` dropped the fused kernels in this process, or ``None``."""
    return _triton_failure


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
        return fallback if triton_problem(device) else checked_triton_kernels(fallback)
    raise LeapsError(f"unknown kernels {choice!r}; expected auto, triton, compile or eager")


def triton_problem(device: torch.device) -> str | None:
    """Why the Triton kernels cannot run on ``device``, or ``None`` when they can."""
    if not TRITON_AVAILABLE:
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


def checked_triton_kernels(fallback: LossKernels) -> LossKernels:
    """:func:`triton_kernels` whose first call for each input is checked against the reference (see the
    module docstring); once a check fails in this process, every call goes to ``fallback``."""
    fused = triton_kernels(fallback)
    verified: set[tuple] = set()

    def fused_may_serve(loss: str, fused_fn: Callable, reference_fn: Callable, activation: torch.Tensor) -> bool:
        if _triton_failure is not None:
            return False
        if torch.compiler.is_compiling():  # the caller checked eagerly before tracing
            return True
        key = (loss, tuple(activation.shape), activation.stride(), activation.dtype, str(activation.device))
        if key not in verified:
            problem = first_use_problem(fused_fn, reference_fn, activation)
            if problem:
                _drop_triton(f"{loss} on {list(activation.shape)} {str(activation.dtype).removeprefix('torch.')}: "
                             f"{problem}", fallback.backend)
                return False
            verified.add(key)
        return True

    def tap_priming(tap: torch.Tensor, target: torch.Tensor, weight: float, distance: str) -> torch.Tensor:
        if distance == "jvs" and fused_may_serve(
                "JVS priming", lambda x: fused.tap_priming(x, target, weight, distance),
                lambda x: EAGER_KERNELS.tap_priming(x, target, weight, distance), tap):
            return fused.tap_priming(tap, target, weight, distance)
        return fallback.tap_priming(tap, target, weight, distance)

    def bn_statistics(activation: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, per_video: bool) -> torch.Tensor:
        if per_video and fused_may_serve(
                "BN statistics", lambda x: fused.bn_statistics(x, mean, var, per_video),
                lambda x: EAGER_KERNELS.bn_statistics(x, mean, var, per_video), activation):
            return fused.bn_statistics(activation, mean, var, per_video)
        return fallback.bn_statistics(activation, mean, var, per_video)

    return LossKernels("triton", tap_priming, bn_statistics, fallback=fallback)


def first_use_problem(
    fused_fn: Callable[[torch.Tensor], torch.Tensor], reference_fn: Callable[[torch.Tensor], torch.Tensor],
    activation: torch.Tensor,
) -> str | None:
    """Why ``fused_fn`` disagrees with ``reference_fn`` on ``activation`` (loss ``[B]`` or its input gradient,
    beyond :data:`FIRST_USE_TOLERANCES`, or an exception), or ``None``."""
    try:
        actual = _loss_and_gradient(fused_fn, activation)
    except Exception as error:  # a kernel that cannot compile or launch here is the finding
        return f"{type(error).__name__}: {one_line(error)}"
    expected = _loss_and_gradient(reference_fn, activation)
    rtol, atol = FIRST_USE_TOLERANCES.get(activation.dtype, FIRST_USE_TOLERANCES[torch.float32])
    for what, got, want in zip(("loss", "input gradient"), actual, expected, strict=True):
        got, want = got.float(), want.float()
        scale = want.abs().max().item()
        tiny = torch.finfo(activation.dtype).smallest_normal if activation.dtype.is_floating_point else 0.0
        if got.shape != want.shape or not torch.allclose(got, want, rtol=rtol, atol=atol * scale + tiny):
            error = (got - want).abs().max().item() if got.shape == want.shape else float("nan")
            return f"{what} differs from the reference (max error {error:.3g}, scale {scale:.3g})"
    return None


def _loss_and_gradient(fn: Callable[[torch.Tensor], torch.Tensor], activation: torch.Tensor):
    leaf = activation.detach().requires_grad_()
    with torch.enable_grad():
        loss = fn(leaf)
        (gradient,) = torch.autograd.grad(loss.sum(), leaf)
    return loss.detach(), gradient


def _drop_triton(reason: str, fallback: str) -> None:
    """Record why the fused kernels are dropped and warn, once per process."""
    global _triton_failure
    _triton_failure = reason
    warnings.warn(f"--kernels auto: the fused Triton kernels failed their first-use check ({reason}); "
                  f"using {fallback} kernels for the rest of this process", KernelFallbackWarning, stacklevel=3)


def _compile_problem() -> str | None:
    """Why ``torch.compile`` cannot compile the references here, or ``None`` (probed on a tiny input)."""
    try:
        probe = torch.compile(priming.tap_priming_loss_ref, dynamic=True)
        probe(torch.ones(2, 3, 2, 2), torch.ones(2, 3), "jvs")
    except Exception as error:  # any compiler failure means: use eager
        return one_line(error)
    return None
