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
from torch.library import wrap_triton

from leaps_engine.kernels._triton import (
    TILE_ELEMENTS,
    TRITON_AVAILABLE,  # noqa: F401  (re-exported: the backend registry reads it here)
    cdiv,
    next_power_of_2,
    plan_chunks,
    register_triton_op,
    require_triton,
    tile_shape,
    tl,
    triton,
)

PRIMING_DISTANCES = ("jvs", "cos", "l1", "l2")
JVS_EPS = 1e-8


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


# --- Triton kernels --------------------------------------------------------------------------------


@triton.jit
def _priming_partial_sum_kernel(
    x_ptr,
    partial_ptr,
    C,
    M,
    stride_b,
    stride_c,
    stride_m,
    num_chunks,
    tiles_per_chunk,
    BLOCK_C: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """Stage 1: ``partial[b, c, chunk] = sum over the chunk's m of x[b, c, m]`` (float32).

    Grid ``(num_chunks, cdiv(C, BLOCK_C), B)``; ``x`` ``[B, C, M]`` at any strides.
    """
    chunk = tl.program_id(0)
    c_block = tl.program_id(1)
    b = tl.program_id(2)
    channels = c_block * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = channels < C
    rows = x_ptr + b.to(tl.int64) * stride_b + channels[:, None] * stride_c
    start = chunk * tiles_per_chunk * BLOCK_M
    end = tl.minimum(start + tiles_per_chunk * BLOCK_M, M)
    acc = tl.zeros((BLOCK_C, BLOCK_M), dtype=tl.float32)
    for m0 in range(start, end, BLOCK_M):
        m = m0 + tl.arange(0, BLOCK_M)
        mask = c_mask[:, None] & (m < end)[None, :]
        acc += tl.load(rows + m[None, :] * stride_m, mask=mask, other=0.0).to(tl.float32)
    tl.store(partial_ptr + (b * C + channels) * num_chunks + chunk, tl.sum(acc, axis=1), mask=c_mask)


@triton.jit
def _priming_channel_block(
    partial_ptr, target_ptr, b, c0, C, num_chunks, inv_M, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr
):
    """Channels ``c0 .. c0 + BLOCK_C`` of video ``b``: ``(channels, mask, mu, s)``, 0 outside ``C``."""
    channels = c0 + tl.arange(0, BLOCK_C)
    c_mask = channels < C
    chunks = tl.arange(0, BLOCK_K)
    offsets = (b * C + channels[:, None]) * num_chunks + chunks[None, :]
    mask = c_mask[:, None] & (chunks < num_chunks)[None, :]
    mu = tl.sum(tl.load(partial_ptr + offsets, mask=mask, other=0.0), axis=1) * inv_M
    s = tl.load(target_ptr + b * C + channels, mask=c_mask, other=0.0).to(tl.float32)
    return channels, c_mask, mu, s


@triton.jit
def _priming_jvs_kernel(
    partial_ptr,
    target_ptr,
    loss_ptr,
    dmu_ptr,
    C,
    num_chunks,
    inv_M,
    weight,
    eps,
    BLOCK_C: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Stage 2, one program per video: ``loss[b]`` and ``dmu[b, c] = d loss[b] / d mu[b, c] / M``.

    ``partial`` ``[B, C, num_chunks]``, ``target`` ``[B, C]``; ``BLOCK_K >= num_chunks``.
    """
    # Triton's launcher passes Python floats as fp32, Inductor (torch.compile) as fp64: one precision.
    inv_M = tl.cast(inv_M, tl.float32)
    weight = tl.cast(weight, tl.float32)
    eps = tl.cast(eps, tl.float32)
    b = tl.program_id(0)
    dot = tl.zeros((BLOCK_C,), dtype=tl.float32)
    mu_sq = tl.zeros((BLOCK_C,), dtype=tl.float32)
    s_sq = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        _, _, mu, s = _priming_channel_block(partial_ptr, target_ptr, b, c0, C, num_chunks, inv_M, BLOCK_C, BLOCK_K)
        dot += mu * s
        mu_sq += mu * mu
        s_sq += s * s
    total_dot = tl.sum(dot, axis=0)
    denominator = tl.sum(mu_sq, axis=0) + tl.sum(s_sq, axis=0) + eps
    tl.store(loss_ptr + b, weight * (1.0 - 2.0 * total_dot / denominator))
    # d/dmu of -2w <mu, s> / den = -2w (s - 2 <mu, s> mu / den) / den; divided by M for each element.
    mu_coefficient = 2.0 * total_dot / denominator
    scale = -2.0 * weight * inv_M / denominator
    for c0 in range(0, C, BLOCK_C):
        channels, c_mask, mu, s = _priming_channel_block(
            partial_ptr, target_ptr, b, c0, C, num_chunks, inv_M, BLOCK_C, BLOCK_K
        )
        tl.store(dmu_ptr + b * C + channels, scale * (s - mu_coefficient * mu), mask=c_mask)


# --- host launchers ---------------------------------------------------------------------------------


def _launch_partial_sums(x: torch.Tensor) -> torch.Tensor:
    """Stage 1 on ``x`` ``[B, C, M]`` (any strides) -> partial sums ``[B, C, num_chunks]`` float32."""
    batch, channels, length = x.shape
    stride_b, stride_c, stride_m = x.stride()
    block_c, block_m = tile_shape(channels, stride_c, stride_m)
    channel_blocks = cdiv(channels, block_c)
    num_chunks, tiles_per_chunk = plan_chunks(length, block_m, batch * channel_blocks)
    partial = torch.empty((batch, channels, num_chunks), device=x.device, dtype=torch.float32)
    wrap_triton(_priming_partial_sum_kernel)[(num_chunks, channel_blocks, batch)](
        x, partial, channels, length, stride_b, stride_c, stride_m, num_chunks, tiles_per_chunk,
        BLOCK_C=block_c, BLOCK_M=block_m,
    )  # fmt: skip
    return partial


def _launch_jvs(
    partial: torch.Tensor, target: torch.Tensor, weight: float, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2: partial sums ``[B, C, K]`` of ``length`` elements -> ``(loss [B], dmu_over_M [B, C])``."""
    batch, channels, num_chunks = partial.shape
    block_k = next_power_of_2(num_chunks)
    block_c = max(min(next_power_of_2(channels), TILE_ELEMENTS // block_k), 1)
    loss = torch.empty((batch,), device=partial.device, dtype=torch.float32)
    dmu_over_m = torch.empty((batch, channels), device=partial.device, dtype=torch.float32)
    wrap_triton(_priming_jvs_kernel)[(batch,)](
        partial, target, loss, dmu_over_m, channels, num_chunks, 1.0 / length, weight, JVS_EPS,
        BLOCK_C=block_c, BLOCK_K=block_k,
    )  # fmt: skip
    return loss, dmu_over_m


# --- custom op + autograd ---------------------------------------------------------------------------


def _tap_priming_loss_fused(
    tap: torch.Tensor, target: torch.Tensor, weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``leaps_engine::tap_priming_loss``: ``(loss [B], dmu_over_M [B, C])`` for ``tap`` ``[B, C, T, N]``."""
    batch, channels = tap.shape[0], tap.shape[1]
    x = tap.reshape(batch, channels, -1)  # a view for the usual (permuted) taps
    partial = _launch_partial_sums(x)
    return _launch_jvs(partial, target.float().contiguous(), weight, x.shape[2])


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
        require_triton("tap_priming_loss_triton", _priming_partial_sum_kernel, tap, target)
    if tap.dim() != 4 or target.shape != tap.shape[:2]:
        shapes = f"{tuple(tap.shape)}, {tuple(target.shape)}"
        raise ValueError(f"expected tap [B, C, T, N] and target [B, C], got {shapes}")
    loss, _ = torch.ops.leaps_engine.tap_priming_loss(tap, target, float(weight))
    return loss
