"""Priming distance between the mean activation of a tap and the stimulus's (paper Eq. 1).

For a tap ``z`` of shape ``[B, C, T, N]`` (channels, frames, spatial positions) the mean embedding is
``mu = z.mean((2, 3))``, ``[B, C]``. Its distance to the stimulus embedding ``s`` (``[B, C]``) is one of:

* ``jvs``: ``1 - JVS(mu, s)`` with the Jaccard vector similarity of Fernando & Herath (CVPR 2021),
  ``JVS(a, b) = 2<a, b> / (|a|^2 + |b|^2 + eps)``. It is cos(angle) times the magnitude agreement
  ``2|a||b| / (|a|^2 + |b|^2)``, so it is 1 only when ``a == b``; the distance lies in [0, 2].
* ``cos``: ``1 - cos(mu, s)`` (angle only).
* ``l1``: mean absolute difference over channels, ``mean_c |a_c - b_c|``.
* ``l2``: root mean square difference over channels, ``sqrt(mean_c (a_c - b_c)^2)``.

The per-channel averages in ``l1``/``l2`` keep their scale independent of the channel count, like JVS.
These functions are the reference definitions: tests and the fused kernels are checked against them.

Fused path (``jvs`` only), :func:`tap_priming_loss_triton`: the loss is the last node, so the forward
also computes the input gradient. With ``M = T * N``, ``d = <mu, s>`` and ``D = |mu|^2 + |s|^2 + eps``,

    ``loss = w (1 - 2 d / D)``,  ``d loss / d z[b, c, m] = -2 w (s_c - 2 d mu_c / D) / (D M)``,

the same for every element of row ``(b, c)``. Stage 1 reads each element of the tap once (tiles
``[BLOCK_C, BLOCK_M]`` at any strides, the reduced axis split into chunks so a single video still fills
the GPU) and writes float32 partial sums ``[B, C, chunks]``; stage 2, one program per video, combines
them, computes the loss and writes ``d loss / d mu / M`` ``[B, C]``. Only that ``[B, C]`` buffer is saved:
backward is a lazy broadcast of ``grad_output * dmu / M`` to the tap's shape, no second pass. The
trade-off: two launches and a tiny partial-sum buffer instead of one reduction with atomics, in exchange
for a deterministic result and no [B, C, T, N] activation kept alive for backward.
"""

import torch

from leaps_engine.kernels._triton import launch, register_triton_op, require_triton
from leaps_engine.kernels.launch_plans import JVS_EPS, PRIMING_DISTANCES, priming_plan


def jvs_ref(a: torch.Tensor, b: torch.Tensor, eps: float = JVS_EPS) -> torch.Tensor:
    """Jaccard vector similarity of ``[B, C]`` rows -> ``[B]``."""
    return 2.0 * (a * b).sum(-1) / (a.pow(2).sum(-1) + b.pow(2).sum(-1) + eps)


def priming_distance_ref(mean: torch.Tensor, target: torch.Tensor, distance: str = "jvs") -> torch.Tensor:
    """Distance ``[B]`` between embeddings ``mean`` and ``target`` (both ``[B, C]``)."""
    if distance == "jvs":
        return 1.0 - jvs_ref(mean, target)
    if distance == "cos":
        return 1.0 - torch.nn.functional.cosine_similarity(mean, target, dim=-1, eps=1e-8)
    if distance == "l1":
        return (mean - target).abs().mean(-1)
    if distance == "l2":
        return ((mean - target).pow(2).mean(-1) + 1e-12).sqrt()
    raise ValueError(f"unknown priming distance {distance!r}; expected one of {PRIMING_DISTANCES}")


def tap_priming_loss_ref(tap: torch.Tensor, target: torch.Tensor, distance: str = "jvs") -> torch.Tensor:
    """Distance ``[B]`` between the space-time mean of ``tap`` ``[B, C, T, N]`` and ``target`` ``[B, C]``."""
    return priming_distance_ref(tap.float().mean(dim=(2, 3)), target.float(), distance)


# --- custom op + autograd ---------------------------------------------------------------------------


def _tap_priming_loss_fused(
    tap: torch.Tensor, target: torch.Tensor, weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``leaps_engine::tap_priming_loss``: ``(loss [B], dmu_over_M [B, C])`` for ``tap`` ``[B, C, T, N]``."""
    batch, channels = tap.shape[0], tap.shape[1]
    x = tap.reshape(batch, channels, -1)  # a view for the usual (permuted) taps
    plan = priming_plan(batch, channels, x.shape[2], x.stride(), str(x.dtype).removeprefix("torch."))
    float32 = {"device": x.device, "dtype": torch.float32}
    buffers = {"x": x, "target": target.float().contiguous(), "weight": weight,
               "partial": torch.empty((batch, channels, plan.num_chunks), **float32),
               "loss": torch.empty((batch,), **float32), "dmu_over_m": torch.empty((batch, channels), **float32)}
    launch(plan.partial_sums, buffers)
    launch(plan.jvs, buffers)
    return buffers["loss"], buffers["dmu_over_m"]


def _tap_priming_loss_setup_context(ctx, inputs, output) -> None:
    tap, _target, _weight = inputs
    _loss, dmu_over_m = output
    ctx.mark_non_differentiable(dmu_over_m)
    ctx.save_for_backward(dmu_over_m)
    ctx.tap_shape = tap.shape
    ctx.tap_dtype = tap.dtype


def _tap_priming_loss_backward(ctx, grad_loss: torch.Tensor, _grad_dmu: torch.Tensor):
    """``d tap = grad_loss[b] * dmu_over_M[b, c]`` for every element of row ``(b, c)``: a lazy broadcast."""
    (dmu_over_m,) = ctx.saved_tensors
    grad_rows = (grad_loss[:, None] * dmu_over_m).to(ctx.tap_dtype)  # always multiply: no host sync
    return grad_rows[:, :, None, None].expand(ctx.tap_shape), None, None


register_triton_op(
    "leaps_engine::tap_priming_loss",
    _tap_priming_loss_fused,
    backward=_tap_priming_loss_backward,
    setup_context=_tap_priming_loss_setup_context,
)


# --- functional entry point -------------------------------------------------------------------------


def tap_priming_loss_triton(tap: torch.Tensor, target: torch.Tensor, weight: float) -> torch.Tensor:
    """``weight * (1 - JVS(tap.mean((2, 3)), target))``, ``[B]`` float32, by the fused Triton kernels.

    ``tap`` ``[B, C, T, N]`` (any strides; float32, bfloat16 or float16), ``target`` ``[B, C]`` (a
    constant: it gets no gradient). Same value as ``weight * tap_priming_loss_ref(tap, target, "jvs")``.
    """
    if not torch.compiler.is_compiling():  # checked once, eagerly: tracing it would break the graph
        require_triton("tap_priming_loss_triton", tap, target)
    if tap.dim() != 4 or target.shape != tap.shape[:2]:
        shapes = f"{tuple(tap.shape)}, {tuple(target.shape)}"
        raise ValueError(f"expected tap [B, C, T, N] and target [B, C], got {shapes}")
    loss, _ = torch.ops.leaps_engine.tap_priming_loss(tap, target, float(weight))
    return loss
