"""BatchNorm-statistics distance of the verifier (paper Eq. 3, after DeepInversion).

For the input ``a`` ``[B, C, T, H, W]`` of a BatchNorm3d layer with running statistics ``m`` and ``v``
(both ``[C]``), the distance of video ``b`` is

    ``|| mu_b - m ||_2 + || var_b - v ||_2``

with ``mu_b`` and ``var_b`` the biased mean and variance of ``a[b]`` over (T, H, W), per channel. The
statistics are per video (Eq. 3 is written per x*), so each video of a batch is optimised exactly as if
alone. ``per_video=False`` takes the statistics over the whole batch (DeepInversion) and returns the
same value for every video.

This function is the reference definition that tests and the fused kernels are checked against.

Fused path (per video), :func:`bn_statistics_loss_triton`: with ``N = T * H * W``,
``loss_b = |mu_b - m| + |var_b - v|`` and the input gradient of element ``x[b, c, n]`` is

    ``g_b * (dmu[b, c] / N + dvar[b, c] * 2 (x[b, c, n] - mu[b, c]) / N)``,
    ``dmu = (mu_b - m) / |mu_b - m|``,  ``dvar = (var_b - v) / |var_b - v|``  (0 where a norm is 0).

Stage 1 reads each element once, in ``[BLOCK_C, BLOCK_N]`` tiles at any strides (contiguous or
channels_last_3d), the reduced axis split into chunks: per tile the mean and the sum of squared
deviations from it (two passes over registers, not ``E[x^2] - E[x]^2``, which cancels catastrophically
for activations with a large offset), tiles and then chunks merged with Chan's parallel formula.
Stage 2, one program per video, merges the chunks into ``mu``, ``var`` ``[B, C]``, the loss and
``dmu``, ``dvar``. Unlike the priming loss the input gradient depends on ``x``, so backward is one more
pass over the saved activation (a second ``triton_op``); the trade-off is keeping the activation alive
for backward instead of writing a full-size gradient during the forward.
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


def bn_statistics_loss_ref(
    activation: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, per_video: bool = True
) -> torch.Tensor:
    """Distance ``[B]`` of the statistics of ``activation`` ``[B, C, *S]`` from the running statistics."""
    x = activation.float().flatten(2)  # [B, C, N]
    if per_video:
        mean = x.mean(dim=2)  # [B, C]
        var = x.var(dim=2, unbiased=False)
    else:
        mean = x.mean(dim=(0, 2)).unsqueeze(0)  # [1, C]
        var = x.var(dim=(0, 2), unbiased=False).unsqueeze(0)
    distance = (mean - running_mean.float()).norm(dim=1) + (var - running_var.float()).norm(dim=1)
    return distance.expand(activation.shape[0])


# --- Triton kernels --------------------------------------------------------------------------------


@triton.jit
def _bn_partial_moments_kernel(
    x_ptr,
    mean_ptr,
    m2_ptr,
    C,
    N,
    stride_b,
    stride_c,
    stride_n,
    num_chunks,
    tiles_per_chunk,
    BLOCK_C: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Stage 1: mean and sum of squared deviations of ``x[b, c, chunk]`` -> ``[B, C, num_chunks]`` each.

    Grid ``(num_chunks, cdiv(C, BLOCK_C), B)``; ``x`` ``[B, C, N]`` at any strides. Every tile but the
    chunk's last is full, so the count before tile ``n0`` is ``n0 - start``.
    """
    chunk = tl.program_id(0)
    c_block = tl.program_id(1)
    b = tl.program_id(2)
    channels = c_block * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = channels < C
    rows = x_ptr + b.to(tl.int64) * stride_b + channels[:, None] * stride_c
    start = chunk * tiles_per_chunk * BLOCK_N
    end = tl.minimum(start + tiles_per_chunk * BLOCK_N, N)
    mean = tl.zeros((BLOCK_C,), dtype=tl.float32)
    m2 = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for n0 in range(start, end, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        mask = c_mask[:, None] & (n < end)[None, :]
        x = tl.load(rows + n[None, :] * stride_n, mask=mask, other=0.0).to(tl.float32)
        tile_count = tl.minimum(end - n0, BLOCK_N).to(tl.float32)
        tile_mean = tl.sum(x, axis=1) / tile_count
        deviation = tl.where(mask, x - tile_mean[:, None], 0.0)
        tile_m2 = tl.sum(deviation * deviation, axis=1)
        count = (n0 - start).to(tl.float32)
        total = count + tile_count
        delta = tile_mean - mean  # Chan et al.: merge (count, mean, m2) with the tile's
        mean += delta * (tile_count / total)
        m2 += tile_m2 + delta * delta * (count * tile_count / total)
    offsets = (b * C + channels) * num_chunks + chunk
    tl.store(mean_ptr + offsets, mean, mask=c_mask)
    tl.store(m2_ptr + offsets, m2, mask=c_mask)


@triton.jit
def _bn_channel_block(
    pmean_ptr, pm2_ptr, b, c0, C, N, num_chunks, chunk_len, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr
):
    """Merge the chunks of channels ``c0 .. c0 + BLOCK_C`` of video ``b``: ``(channels, mask, mu, var)``."""
    channels = c0 + tl.arange(0, BLOCK_C)
    c_mask = channels < C
    chunks = tl.arange(0, BLOCK_K)
    k_mask = chunks < num_chunks
    counts = tl.where(k_mask, tl.minimum(N - chunks * chunk_len, chunk_len), 0).to(tl.float32)
    offsets = (b * C + channels[:, None]) * num_chunks + chunks[None, :]
    mask = c_mask[:, None] & k_mask[None, :]
    chunk_means = tl.load(pmean_ptr + offsets, mask=mask, other=0.0)
    chunk_m2 = tl.load(pm2_ptr + offsets, mask=mask, other=0.0)
    mean = tl.sum(chunk_means * counts[None, :], axis=1) / N
    deviation = tl.where(mask, chunk_means - mean[:, None], 0.0)
    m2 = tl.sum(chunk_m2 + deviation * deviation * counts[None, :], axis=1)
    return channels, c_mask, mean, m2 / N


@triton.jit
def _bn_distance_kernel(
    pmean_ptr,
    pm2_ptr,
    running_mean_ptr,
    running_var_ptr,
    mean_ptr,
    var_ptr,
    loss_ptr,
    dmu_ptr,
    dvar_ptr,
    C,
    N,
    num_chunks,
    chunk_len,
    BLOCK_C: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Stage 2, one program per video: ``mean``, ``var``, ``dmu``, ``dvar`` ``[B, C]`` and ``loss`` ``[B]``."""
    b = tl.program_id(0)
    mean_sq = tl.zeros((BLOCK_C,), dtype=tl.float32)
    var_sq = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        channels, c_mask, mean, var = _bn_channel_block(
            pmean_ptr, pm2_ptr, b, c0, C, N, num_chunks, chunk_len, BLOCK_C, BLOCK_K
        )
        tl.store(mean_ptr + b * C + channels, mean, mask=c_mask)
        tl.store(var_ptr + b * C + channels, var, mask=c_mask)
        mean_diff = mean - tl.load(running_mean_ptr + channels, mask=c_mask, other=0.0).to(tl.float32)
        var_diff = var - tl.load(running_var_ptr + channels, mask=c_mask, other=0.0).to(tl.float32)
        mean_sq += mean_diff * mean_diff
        var_sq += var_diff * var_diff
    mean_norm = tl.sqrt(tl.sum(mean_sq, axis=0))
    var_norm = tl.sqrt(tl.sum(var_sq, axis=0))
    tl.store(loss_ptr + b, mean_norm + var_norm)
    inv_mean_norm = tl.where(mean_norm > 0.0, 1.0 / tl.maximum(mean_norm, 1e-30), 0.0)
    inv_var_norm = tl.where(var_norm > 0.0, 1.0 / tl.maximum(var_norm, 1e-30), 0.0)
    for c0 in range(0, C, BLOCK_C):  # recomputed, not re-read: this program's stores need not be visible
        channels, c_mask, mean, var = _bn_channel_block(
            pmean_ptr, pm2_ptr, b, c0, C, N, num_chunks, chunk_len, BLOCK_C, BLOCK_K
        )
        mean_diff = mean - tl.load(running_mean_ptr + channels, mask=c_mask, other=0.0).to(tl.float32)
        var_diff = var - tl.load(running_var_ptr + channels, mask=c_mask, other=0.0).to(tl.float32)
        tl.store(dmu_ptr + b * C + channels, mean_diff * inv_mean_norm, mask=c_mask)
        tl.store(dvar_ptr + b * C + channels, var_diff * inv_var_norm, mask=c_mask)


@triton.jit
def _bn_backward_kernel(
    x_ptr,
    dx_ptr,
    mean_ptr,
    dmu_ptr,
    dvar_ptr,
    grad_ptr,
    C,
    N,
    stride_xb,
    stride_xc,
    stride_xn,
    stride_db,
    stride_dc,
    stride_dn,
    BLOCK_C: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """``dx[b, c, n] = g[b] (dmu[b, c] + 2 dvar[b, c] (x[b, c, n] - mean[b, c])) / N``, in ``dx``'s dtype.

    Grid ``(cdiv(N, BLOCK_N), cdiv(C, BLOCK_C), B)``; ``x``, ``dx`` ``[B, C, N]`` at their own strides.
    """
    n_block = tl.program_id(0)
    c_block = tl.program_id(1)
    b = tl.program_id(2)
    channels = c_block * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = channels < C
    n = n_block * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = c_mask[:, None] & (n < N)[None, :]
    rows = b * C + channels
    mean = tl.load(mean_ptr + rows, mask=c_mask, other=0.0)
    dmu = tl.load(dmu_ptr + rows, mask=c_mask, other=0.0)
    dvar = tl.load(dvar_ptr + rows, mask=c_mask, other=0.0)
    scale = tl.load(grad_ptr + b).to(tl.float32) / N
    b64 = b.to(tl.int64)
    x_offsets = b64 * stride_xb + channels[:, None] * stride_xc + n[None, :] * stride_xn
    x = tl.load(x_ptr + x_offsets, mask=mask, other=0.0).to(tl.float32)
    dx = scale * (dmu[:, None] + 2.0 * dvar[:, None] * (x - mean[:, None]))
    dx_offsets = b64 * stride_db + channels[:, None] * stride_dc + n[None, :] * stride_dn
    tl.store(dx_ptr + dx_offsets, dx.to(dx_ptr.dtype.element_ty), mask=mask)


# --- host launchers ---------------------------------------------------------------------------------


def _launch_partial_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Stage 1 on ``x`` ``[B, C, N]`` -> chunk means, chunk M2 ``[B, C, num_chunks]`` and the chunk length."""
    batch, channels, length = x.shape
    stride_b, stride_c, stride_n = x.stride()
    block_c, block_n = tile_shape(channels, stride_c, stride_n)
    channel_blocks = cdiv(channels, block_c)
    num_chunks, tiles_per_chunk = plan_chunks(length, block_n, batch * channel_blocks)
    chunk_means = torch.empty((batch, channels, num_chunks), device=x.device, dtype=torch.float32)
    chunk_m2 = torch.empty_like(chunk_means)
    wrap_triton(_bn_partial_moments_kernel)[(num_chunks, channel_blocks, batch)](
        x, chunk_means, chunk_m2, channels, length, stride_b, stride_c, stride_n, num_chunks, tiles_per_chunk,
        BLOCK_C=block_c, BLOCK_N=block_n,
    )  # fmt: skip
    return chunk_means, chunk_m2, tiles_per_chunk * block_n


def _launch_distance(
    chunk_means: torch.Tensor,
    chunk_m2: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    length: int,
    chunk_len: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage 2 -> ``(loss [B], mean, var, dmu, dvar [B, C])``, all float32."""
    batch, channels, num_chunks = chunk_means.shape
    block_k = next_power_of_2(num_chunks)
    block_c = max(min(next_power_of_2(channels), TILE_ELEMENTS // block_k), 1)
    loss = torch.empty((batch,), device=chunk_means.device, dtype=torch.float32)
    mean, var, dmu, dvar = (
        torch.empty((batch, channels), device=chunk_means.device, dtype=torch.float32) for _ in range(4)
    )
    wrap_triton(_bn_distance_kernel)[(batch,)](
        chunk_means, chunk_m2, running_mean, running_var, mean, var, loss, dmu, dvar,
        channels, length, num_chunks, chunk_len,
        BLOCK_C=block_c, BLOCK_K=block_k,
    )  # fmt: skip
    return loss, mean, var, dmu, dvar


def _launch_backward(
    x: torch.Tensor, mean: torch.Tensor, dmu: torch.Tensor, dvar: torch.Tensor, grad_loss: torch.Tensor
) -> torch.Tensor:
    """``dx`` ``[B, C, N]`` with ``x``'s dtype and strides (``empty_like`` keeps a dense layout)."""
    batch, channels, length = x.shape
    dx = torch.empty_like(x)
    block_c, block_n = tile_shape(channels, x.stride(1), x.stride(2))
    grid = (cdiv(length, block_n), cdiv(channels, block_c), batch)
    wrap_triton(_bn_backward_kernel)[grid](
        x, dx, mean, dmu, dvar, grad_loss, channels, length, *x.stride(), *dx.stride(),
        BLOCK_C=block_c, BLOCK_N=block_n,
    )  # fmt: skip
    return dx


# --- custom ops + autograd --------------------------------------------------------------------------


def _bn_statistics_loss_fused(
    activation: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``leaps_engine::bn_statistics_loss``: ``(loss [B], mean, var, dmu, dvar [B, C])``."""
    batch, channels = activation.shape[0], activation.shape[1]
    x = activation.reshape(batch, channels, -1)  # a view for contiguous and channels_last_3d inputs
    chunk_means, chunk_m2, chunk_len = _launch_partial_moments(x)
    return _launch_distance(
        chunk_means, chunk_m2, running_mean.contiguous(), running_var.contiguous(), x.shape[2], chunk_len
    )


def _bn_statistics_loss_backward_fused(
    activation: torch.Tensor, mean: torch.Tensor, dmu: torch.Tensor, dvar: torch.Tensor, grad_loss: torch.Tensor
) -> torch.Tensor:
    """``leaps_engine::bn_statistics_loss_backward``: ``d activation`` in its dtype, shape and layout."""
    batch, channels = activation.shape[0], activation.shape[1]
    x = activation.reshape(batch, channels, -1)
    dx = _launch_backward(x, mean.contiguous(), dmu.contiguous(), dvar.contiguous(), grad_loss.contiguous())
    return dx.view(activation.shape)  # dx has x's strides, so channels_last_3d survives the view


def _bn_statistics_loss_setup_context(ctx, inputs, output) -> None:
    activation, _running_mean, _running_var = inputs
    _loss, mean, var, dmu, dvar = output
    ctx.mark_non_differentiable(mean, var, dmu, dvar)
    ctx.save_for_backward(activation, mean, dmu, dvar)


def _bn_statistics_loss_backward(ctx, grad_loss: torch.Tensor, *_grad_statistics: torch.Tensor):
    """Input gradient only: the running statistics are constants."""
    activation, mean, dmu, dvar = ctx.saved_tensors
    grad = torch.ops.leaps_engine.bn_statistics_loss_backward(activation, mean, dmu, dvar, grad_loss)
    return grad, None, None


register_triton_op(
    "leaps_engine::bn_statistics_loss",
    _bn_statistics_loss_fused,
    backward=_bn_statistics_loss_backward,
    setup_context=_bn_statistics_loss_setup_context,
)
register_triton_op("leaps_engine::bn_statistics_loss_backward", _bn_statistics_loss_backward_fused)


# --- functional entry point -------------------------------------------------------------------------


def bn_statistics_loss_triton(
    activation: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor
) -> torch.Tensor:
    """Per-video ``|mu_b - m| + |var_b - v|``, ``[B]`` float32, by the fused Triton kernels.

    ``activation`` ``[B, C, *S]`` (contiguous or channels_last_3d; float32, bfloat16 or float16),
    ``running_mean``, ``running_var`` ``[C]`` (constants: no gradient). Same value as
    ``bn_statistics_loss_ref(activation, running_mean, running_var, per_video=True)``.
    """
    if not torch.compiler.is_compiling():  # checked once, eagerly: tracing it would break the graph
        require_triton("bn_statistics_loss_triton", _bn_partial_moments_kernel, activation, running_mean, running_var)
    channels = activation.shape[1] if activation.dim() >= 2 else -1
    if running_mean.shape != (channels,) or running_var.shape != (channels,):
        shapes = f"{tuple(activation.shape)}, {tuple(running_mean.shape)}, {tuple(running_var.shape)}"
        raise ValueError(f"expected activation [B, C, *S] and running statistics [C], got {shapes}")
    loss, *_ = torch.ops.leaps_engine.bn_statistics_loss(activation, running_mean, running_var)
    return loss
