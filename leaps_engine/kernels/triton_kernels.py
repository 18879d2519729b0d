"""The fused losses' Triton kernels: ``@triton.jit`` definitions only, importable with Triton alone.

No torch here, so an environment with nothing but a given Triton release can compile every kernel ahead
of time (``tests/test_kernels_aot.py``). The math, the launches and the autograd wiring live beside the
reference of each loss: :mod:`leaps_engine.kernels.priming` (JVS priming distance, paper Eq. 1) and
:mod:`leaps_engine.kernels.bn_stats` (BatchNorm-statistics distance, Eq. 3); what each launch passes is
planned in :mod:`leaps_engine.kernels.launch_plans`.

``triton`` ships with the CUDA builds of torch but not with the CPU wheels, so the import is optional:
without it ``TRITON_AVAILABLE`` is False and ``triton.jit`` is a no-op stub (the kernels are defined but
never launched). With ``TRITON_INTERPRET=1`` set before this module is imported, Triton runs the kernels
through its interpreter on CPU tensors (slow; for tests on tiny shapes).
"""

import types

try:
    import triton
    import triton.language as tl

    TRITON_AVAILABLE = True
except ImportError:  # CPU-only torch wheels come without triton
    TRITON_AVAILABLE = False
    triton = types.SimpleNamespace(jit=lambda fn: fn)  # kernels stay plain, never launched
    tl = types.SimpleNamespace(constexpr=int)  # only read in kernel signatures


# --- JVS priming distance (leaps_engine.kernels.priming) ----------------------------------------


@triton.jit
def priming_partial_sum_kernel(
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
def priming_channel_block(
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
def priming_jvs_kernel(
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
        _, _, mu, s = priming_channel_block(partial_ptr, target_ptr, b, c0, C, num_chunks, inv_M, BLOCK_C, BLOCK_K)
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
        channels, c_mask, mu, s = priming_channel_block(
            partial_ptr, target_ptr, b, c0, C, num_chunks, inv_M, BLOCK_C, BLOCK_K
        )
        tl.store(dmu_ptr + b * C + channels, scale * (s - mu_coefficient * mu), mask=c_mask)


# --- BatchNorm-statistics distance (leaps_engine.kernels.bn_stats) -------------------------------


@triton.jit
def bn_partial_moments_kernel(
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
def bn_channel_block(
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
def bn_distance_kernel(
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
        channels, c_mask, mean, var = bn_channel_block(
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
        channels, c_mask, mean, var = bn_channel_block(
            pmean_ptr, pm2_ptr, b, c0, C, N, num_chunks, chunk_len, BLOCK_C, BLOCK_K
        )
        mean_diff = mean - tl.load(running_mean_ptr + channels, mask=c_mask, other=0.0).to(tl.float32)
        var_diff = var - tl.load(running_var_ptr + channels, mask=c_mask, other=0.0).to(tl.float32)
        tl.store(dmu_ptr + b * C + channels, mean_diff * inv_mean_norm, mask=c_mask)
        tl.store(dvar_ptr + b * C + channels, var_diff * inv_var_norm, mask=c_mask)


@triton.jit
def bn_backward_kernel(
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
