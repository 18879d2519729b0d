"""Comparing an exported model's outputs with eager torch: the check every backend must pass.

At float32 the outputs must be allclose; at half precision (float16 or bfloat16) every output must have
a cosine similarity of at least 0.99 with eager's. A failure is an error, never a warning.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from leaps_engine.engine.adapters.base import VideoAdapter
from leaps_engine.errors import LeapsError
from leaps_engine.export.graph import GraphSpec, eager_outputs, example_input, on_cpu

FLOAT32_RTOL = 1e-3
FLOAT32_ATOL = 1e-4  # times max(1, the largest reference magnitude)
HALF_MIN_COSINE = 0.99


@dataclass(frozen=True)
class OutputParity:
    """How one output of a backend compares with eager: largest absolute error and cosine similarity."""

    name: str
    max_abs_error: float
    cosine: float
    passed: bool

    def as_dict(self) -> dict:
        return {"max_abs_error": self.max_abs_error, "cosine": self.cosine, "passed": self.passed}


def compare_output(name: str, reference: torch.Tensor, candidate: torch.Tensor, dtype: str) -> OutputParity:
    """Compare ``candidate`` with ``reference`` (same shape) under the tolerance of ``dtype``."""
    if tuple(candidate.shape) != tuple(reference.shape):
        return OutputParity(name, float("inf"), 0.0, False)
    reference = reference.detach().float().cpu()
    candidate = candidate.detach().float().cpu()
    error = float((candidate - reference).abs().max()) if reference.numel() else 0.0
    cosine = float(torch.nn.functional.cosine_similarity(candidate.flatten(), reference.flatten(), dim=0, eps=1e-12))
    if not torch.isfinite(candidate).all():
        passed = False
    elif dtype == "float32":
        scale = max(1.0, float(reference.abs().max())) if reference.numel() else 1.0
        passed = bool(torch.allclose(candidate, reference, rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL * scale))
    else:
        passed = cosine >= HALF_MIN_COSINE or error == 0.0
    return OutputParity(name, error, cosine, passed)


def compare_outputs(
    names: Sequence[str], reference: Sequence[torch.Tensor], candidate: Sequence[torch.Tensor], dtype: str
) -> list[OutputParity]:
    """Compare each named output; see :func:`compare_output`."""
    return [compare_output(n, r, c, dtype) for n, r, c in zip(names, reference, candidate, strict=True)]


def describe_failure(parities: Sequence[OutputParity], dtype: str) -> str | None:
    """One line naming the worst failing output, or ``None`` when every output passed."""
    failed = [p for p in parities if not p.passed]
    if not failed:
        return None
    worst = min(failed, key=lambda p: p.cosine)
    rule = f"allclose at rtol {FLOAT32_RTOL}" if dtype == "float32" else f"cosine >= {HALF_MIN_COSINE}"
    return (f"output {worst.name} differs from eager (max abs error {worst.max_abs_error:.3g}, cosine "
            f"{worst.cosine:.5f}; {dtype} needs {rule})")


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """Turn off TF32 in cuDNN convolutions and CUDA matmuls for the block (restored after), so an eager
    float32 reference on a GPU is exact enough for the float32 allclose rule."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


VERIFY_BATCHES = (2, 1)  # the export's example batch, and a batch of one


def verify_against_eager(
    adapter: VideoAdapter, graph: GraphSpec, run: Callable[[torch.Tensor], list[torch.Tensor]], label: str
) -> tuple[dict[str, dict], list[int]]:
    """Run an exported graph (``run``: float32 CPU video -> outputs) on noise at each of
    :data:`VERIFY_BATCHES` and compare every output with eager; return each output's worst figures and
    each output's width (its second dimension), or raise :class:`LeapsError` naming the worst failing
    output (``label`` says what was exported)."""
    reference_adapter = on_cpu(adapter, torch.float32)  # copied once, if at all
    figures: dict[str, dict] = {}
    for batch in VERIFY_BATCHES:
        video = example_input(graph, batch, seed=batch)
        reference = eager_outputs(reference_adapter, graph, video)
        parities = compare_outputs(graph.output_names, reference, run(video), graph.dtype)
        failure = describe_failure(parities, graph.dtype)
        if failure:
            raise LeapsError(f"{label} fails verification at batch {batch}: {failure}")
        for parity in parities:
            worst = figures.setdefault(parity.name, parity.as_dict())
            worst["max_abs_error"] = max(worst["max_abs_error"], parity.max_abs_error)
            worst["cosine"] = min(worst["cosine"], parity.cosine)
    return figures, [int(value.shape[1]) for value in reference]
