"""Shared Triton plumbing for the fused losses: the guarded import, launch checks and tiling plans.

``triton`` ships with the CUDA builds of torch but not with the CPU wheels, so importing it is
optional: without it ``TRITON_AVAILABLE`` is False, ``triton.jit`` is a no-op stub (the kernels are
defined but never launched) and the ``*_triton`` entry points raise a RuntimeError. With
``TRITON_INTERPRET=1`` in the environment before the kernel modules are imported, Triton runs the
kernels through its numpy interpreter on CPU tensors (slow; for tests on tiny shapes).
"""

import types
from collections.abc import Callable

import torch

try:
    import triton
    import triton.language as tl

    TRITON_AVAILABLE = True
except ImportError:  # CPU-only torch wheels come without triton
    TRITON_AVAILABLE = False
    triton = types.SimpleNamespace(jit=lambda fn: fn)  # kernels stay plain, never launched
    tl = types.SimpleNamespace(constexpr=int)  # only read in kernel signatures

# Elements per [BLOCK_C, BLOCK_M] tile: 2048 fp32 values are 16 registers a thread with 4 warps.
TILE_ELEMENTS = 2048
# Stage-1 reductions split the reduced axis into chunks until about this many programs run ...
TARGET_PROGRAMS = 1024
# ... but keep at least this many tiles in a chunk and at most this many chunks (stage 2 loads them at once).
MIN_TILES_PER_CHUNK = 4
MAX_CHUNKS = 256


def cdiv(a: int, b: int) -> int:
    """Ceiling division of positive ints."""
    return (a + b - 1) // b


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= ``n`` (>= 1)."""
    return 1 << max(int(n) - 1, 0).bit_length()


def require_triton(entry_point: str, kernel: Callable, *tensors: torch.Tensor) -> None:
    """Raise a clear RuntimeError when ``entry_point`` cannot launch ``kernel`` on ``tensors``."""
    if not TRITON_AVAILABLE:
        raise RuntimeError(
            f"{entry_point} needs the `triton` package (CUDA builds of torch ship it); "
            "use the pure-torch `*_ref` function instead"
        )
    interpreted = type(kernel).__name__ == "InterpretedFunction"
    for tensor in tensors:
        if tensor.device.type != "cuda" and not interpreted:
            raise RuntimeError(
                f"{entry_point} got a tensor on {tensor.device}; it needs CUDA tensors, or "
                "TRITON_INTERPRET=1 set before leaps_engine is imported to run on CPU"
            )


def tile_shape(channels: int, stride_c: int, stride_m: int) -> tuple[int, int]:
    """``(BLOCK_C, BLOCK_M)`` for a ``[C, M]`` slab: the unit-stride axis gets the long side of the tile."""
    if stride_c == 1 and stride_m != 1 and channels > 1:  # channels-last: read along C
        block_c = min(next_power_of_2(channels), 128)
    else:  # contiguous [C, M]: read along M
        block_c = min(next_power_of_2(channels), 16)
    return block_c, TILE_ELEMENTS // block_c


def plan_chunks(length: int, block: int, rows: int) -> tuple[int, int]:
    """Split ``length`` into ``(num_chunks, tiles_per_chunk)`` of ``block``-sized tiles for ``rows`` programs.

    More chunks fill the GPU when ``rows`` (videos x channel blocks) is small; every chunk holds at
    least ``MIN_TILES_PER_CHUNK`` tiles (or all of them) and there are at most ``MAX_CHUNKS``.
    """
    tiles = cdiv(length, block)
    wanted = min(max(cdiv(TARGET_PROGRAMS, rows), 1), MAX_CHUNKS)
    tiles_per_chunk = max(MIN_TILES_PER_CHUNK, cdiv(tiles, wanted))
    return cdiv(tiles, tiles_per_chunk), tiles_per_chunk


def register_triton_op(
    name: str, fn: Callable, backward: Callable | None = None, setup_context: Callable | None = None
) -> None:
    """Register ``fn`` as ``torch.library.triton_op(name)`` with autograd; a no-op without triton.

    ``triton_op`` also registers ``fn`` as the op's fake (meta) kernel, so ``fn`` may only read shapes,
    strides and dtypes of its inputs, and must launch its kernels through ``wrap_triton``.
    """
    if not TRITON_AVAILABLE:
        return
    op = torch.library.triton_op(name, mutates_args=())(fn)
    if backward is not None:
        op.register_autograd(backward, setup_context=setup_context)
