"""What each launch of the fused kernels passes, computed from shapes and strides alone.

For a loss input of ``batch x channels x length`` elements at given strides and dtype, a plan names the
kernel (in :mod:`leaps_engine.kernels.triton_kernels`), the grid, every argument in order (tensors and
run-time floats as named placeholders, integers as their values), the ``tl.constexpr`` values and
``num_warps``. The launchers in :mod:`leaps_engine.kernels.priming` and
:mod:`leaps_engine.kernels.bn_stats` bind the placeholders to their tensors and launch exactly this;
``tests/test_kernels_aot.py`` compiles exactly this for real GPU targets. Plain Python: no torch, no
Triton, so both sides import it.

Tiling: a stage-1 reduction reads ``[BLOCK_C, BLOCK_M]`` tiles of a ``[C, M]`` slab, the unit-stride axis
taking the long side, and splits the reduced axis into chunks until about ``TARGET_PROGRAMS`` programs
run (at least ``MIN_TILES_PER_CHUNK`` tiles a chunk, at most ``MAX_CHUNKS`` chunks: stage 2 loads them
at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Elements per [BLOCK_C, BLOCK_M] tile: 2048 fp32 values are 16 registers a thread with 4 warps.
TILE_ELEMENTS = 2048
TARGET_PROGRAMS = 1024
MIN_TILES_PER_CHUNK = 4
MAX_CHUNKS = 256
NUM_WARPS = 4
# Loss-input dtypes the launchers accept (torch's names); partial results are always float32.
INPUT_DTYPES = ("float32", "bfloat16", "float16")
JVS_EPS = 1e-8
# Priming distances (paper Eq. 1 is jvs; the rest are the ablation of Table 2); the kernel takes jvs.
PRIMING_DISTANCES = ("jvs", "cos", "l1", "l2")


@dataclass(frozen=True)
class TensorArg:
    """A tensor argument: ``name`` is what the launcher binds, ``dtype`` torch's name of its dtype."""

    name: str
    dtype: str


@dataclass(frozen=True)
class FloatArg:
    """A run-time float argument the launcher binds by ``name``."""

    name: str


@dataclass(frozen=True)
class Launch:
    """One kernel launch: ``kernel[grid](*args, **constexprs, num_warps=num_warps)``."""

    kernel: str  # attribute name in leaps_engine.kernels.triton_kernels
    grid: tuple[int, ...]
    args: tuple[TensorArg | FloatArg | int, ...]
    constexprs: dict[str, int] = field(default_factory=dict)
    num_warps: int = NUM_WARPS

    def bind(self, values: dict[str, object]) -> list[object]:
        """The positional arguments with every placeholder replaced by ``values[placeholder.name]``."""
        return [values[arg.name] if isinstance(arg, (TensorArg, FloatArg)) else arg for arg in self.args]


@dataclass(frozen=True)
class PrimingPlan:
    """The two launches of the JVS priming loss over a tap viewed as ``[B, C, M]``."""

    num_chunks: int  # partial sums per (video, channel)
    partial_sums: Launch
    jvs: Launch


@dataclass(frozen=True)
class BnStatisticsPlan:
    """The two forward launches of the BN-statistics loss over an activation viewed as ``[B, C, N]``."""

    num_chunks: int
    chunk_len: int  # elements per chunk (the last may hold fewer)
    partial_moments: Launch
    distance: Launch


def cdiv(a: int, b: int) -> int:
    """Ceiling division of positive ints."""
    return (a + b - 1) // b


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= ``n`` (>= 1)."""
    return 1 << max(int(n) - 1, 0).bit_length()


def tile_shape(channels: int, stride_c: int, stride_m: int) -> tuple[int, int]:
    """``(BLOCK_C, BLOCK_M)`` for a ``[C, M]`` slab: the unit-stride axis gets the long side of the tile."""
    if stride_c == 1 and stride_m != 1 and channels > 1:  # channels-last: read along C
        block_c = min(next_power_of_2(channels), 128)
    else:  # contiguous [C, M]: read along M
        block_c = min(next_power_of_2(channels), 16)
    return block_c, TILE_ELEMENTS // block_c


def plan_chunks(length: int, block: int, rows: int) -> tuple[int, int]:
    """Split ``length`` into ``(num_chunks, tiles_per_chunk)`` of ``block``-sized tiles for ``rows`` programs."""
    tiles = cdiv(length, block)
    wanted = min(max(cdiv(TARGET_PROGRAMS, rows), 1), MAX_CHUNKS)
    tiles_per_chunk = max(MIN_TILES_PER_CHUNK, cdiv(tiles, wanted))
    return cdiv(tiles, tiles_per_chunk), tiles_per_chunk


def _reduction_blocks(num_chunks: int, channels: int) -> tuple[int, int]:
    """``(BLOCK_C, BLOCK_K)`` of a stage-2 program that loads every chunk of ``BLOCK_C`` channels at once."""
    block_k = next_power_of_2(num_chunks)
    return max(min(next_power_of_2(channels), TILE_ELEMENTS // block_k), 1), block_k


def priming_plan(
    batch: int, channels: int, length: int, strides: tuple[int, int, int], dtype: str
) -> PrimingPlan:
    """Launches for a tap ``x`` ``[batch, channels, length]`` at ``strides`` (elements) of ``dtype``.

    Placeholders: ``x``, ``partial`` (float32 ``[B, C, num_chunks]``), ``target`` (float32 ``[B, C]``),
    ``loss`` (float32 ``[B]``), ``dmu_over_m`` (float32 ``[B, C]``) and the float ``weight``.
    """
    stride_b, stride_c, stride_m = strides
    block_c, block_m = tile_shape(channels, stride_c, stride_m)
    channel_blocks = cdiv(channels, block_c)
    num_chunks, tiles_per_chunk = plan_chunks(length, block_m, batch * channel_blocks)
    partial_sums = Launch(
        "priming_partial_sum_kernel", (num_chunks, channel_blocks, batch),
        (TensorArg("x", dtype), TensorArg("partial", "float32"), channels, length, stride_b, stride_c, stride_m,
         num_chunks, tiles_per_chunk),
        {"BLOCK_C": block_c, "BLOCK_M": block_m})
    block_c, block_k = _reduction_blocks(num_chunks, channels)
    jvs = Launch(
        "priming_jvs_kernel", (batch,),
        (TensorArg("partial", "float32"), TensorArg("target", "float32"), TensorArg("loss", "float32"),
         TensorArg("dmu_over_m", "float32"), channels, num_chunks, 1.0 / length, FloatArg("weight"), JVS_EPS),
        {"BLOCK_C": block_c, "BLOCK_K": block_k})
    return PrimingPlan(num_chunks, partial_sums, jvs)


def bn_statistics_plan(
    batch: int, channels: int, length: int, strides: tuple[int, int, int], dtype: str
) -> BnStatisticsPlan:
    """Forward launches for an activation ``x`` ``[batch, channels, length]`` at ``strides`` of ``dtype``.

    Placeholders: ``x``; float32 ``chunk_means``, ``chunk_m2`` ``[B, C, num_chunks]``; float32
    ``running_mean``, ``running_var`` ``[C]``; float32 outputs ``mean``, ``var``, ``dmu``, ``dvar``
    ``[B, C]`` and ``loss`` ``[B]``.
    """
    stride_b, stride_c, stride_n = strides
    block_c, block_n = tile_shape(channels, stride_c, stride_n)
    channel_blocks = cdiv(channels, block_c)
    num_chunks, tiles_per_chunk = plan_chunks(length, block_n, batch * channel_blocks)
    chunk_len = tiles_per_chunk * block_n
    partial_moments = Launch(
        "bn_partial_moments_kernel", (num_chunks, channel_blocks, batch),
        (TensorArg("x", dtype), TensorArg("chunk_means", "float32"), TensorArg("chunk_m2", "float32"), channels,
         length, stride_b, stride_c, stride_n, num_chunks, tiles_per_chunk),
        {"BLOCK_C": block_c, "BLOCK_N": block_n})
    block_c, block_k = _reduction_blocks(num_chunks, channels)
    distance = Launch(
        "bn_distance_kernel", (batch,),
        (*(TensorArg(name, "float32") for name in ("chunk_means", "chunk_m2", "running_mean", "running_var", "mean",
                                                    "var", "loss", "dmu", "dvar")),
         channels, length, num_chunks, chunk_len),
        {"BLOCK_C": block_c, "BLOCK_K": block_k})
    return BnStatisticsPlan(num_chunks, chunk_len, partial_moments, distance)


def bn_backward_launch(
    batch: int, channels: int, length: int, x_strides: tuple[int, int, int], dx_strides: tuple[int, int, int],
    dtype: str,
) -> Launch:
    """The backward launch: ``dx`` (``dtype``, ``dx_strides``) from ``x`` and the float32 ``mean``, ``dmu``,
    ``dvar`` ``[B, C]`` and ``grad_loss`` ``[B]``."""
    block_c, block_n = tile_shape(channels, x_strides[1], x_strides[2])
    return Launch(
        "bn_backward_kernel", (cdiv(length, block_n), cdiv(channels, block_c), batch),
        (TensorArg("x", dtype), TensorArg("dx", dtype), TensorArg("mean", "float32"), TensorArg("dmu", "float32"),
         TensorArg("dvar", "float32"), TensorArg("grad_loss", "float32"), channels, length, *x_strides, *dx_strides),
        {"BLOCK_C": block_c, "BLOCK_N": block_n})
