"""What an exported graph computes and how its sidecar describes it (shared by ONNX and AOTInductor).

An exported graph takes a normalised video ``[B, 3, T, H, W]`` at the model's own input size (the
adapter's resize happens before it, in torch), with the batch dynamic and T, H, W fixed, and returns
the logits ``[B, K]`` and, for each exported tap, that tap's channel means ``[B, C]`` (the priming
features of paper Eq. 2).
"""

from __future__ import annotations

import copy
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from leaps_engine.engine.adapters.base import VideoAdapter
from leaps_engine.errors import LeapsError

INPUT_NAME = "video"
LOGITS_NAME = "logits"
EXAMPLE_BATCH = 2  # a dynamic dimension needs an example size above 1, or torch.export fixes it
DEFAULT_MAX_BATCH = 64
EXPORT_DTYPES = {"float32": torch.float32, "float16": torch.float16}  # bfloat16 cannot be checked on ORT's CPU provider


class ForwardOutputs(nn.Module):
    """The exported computation: ``video [B, 3, T, H, W] -> (logits [B, K], *tap means [B, C])``."""

    def __init__(self, adapter: VideoAdapter, taps: Sequence[str] = ()):
        super().__init__()
        self.adapter = adapter
        self.taps = tuple(taps)

    def forward(self, video: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if not self.taps:
            return self.adapter(video)
        logits, values = self.adapter.forward_with_taps(video, self.taps)
        return (logits, *[value.mean(dim=(2, 3)) for value in values])


@dataclass(frozen=True)
class GraphSpec:
    """One graph to export: the model input size (T, H, W), the taps as extra outputs, dtype, batch bound."""

    size: tuple[int, int, int]
    taps: tuple[str, ...] = ()
    dtype: str = "float32"
    max_batch: int = DEFAULT_MAX_BATCH
    output_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.dtype not in EXPORT_DTYPES:
            raise LeapsError(f"exported graphs are {' or '.join(EXPORT_DTYPES)}, not {self.dtype}: a bfloat16 graph "
                             "cannot be checked against eager on ONNX Runtime's CPU provider")
        if self.max_batch < EXAMPLE_BATCH:
            raise LeapsError(f"the largest batch must be at least {EXAMPLE_BATCH}, got {self.max_batch}")
        object.__setattr__(self, "output_names", (LOGITS_NAME, *(f"tap{i}" for i in range(len(self.taps)))))

    @property
    def torch_dtype(self) -> torch.dtype:
        return EXPORT_DTYPES[self.dtype]


def graph_spec_for(
    adapter: VideoAdapter, size: tuple[int, int, int], taps: Sequence[str] | bool = (), dtype: str = "float32",
    max_batch: int = DEFAULT_MAX_BATCH,
) -> GraphSpec:
    """The graph for videos of ``size``: the model input size it is resized to, and ``taps`` checked
    (``True`` means every tap of the adapter)."""
    if any(s < 1 for s in size):
        raise LeapsError(f"impossible size {'x'.join(map(str, size))}: every dimension must be >= 1")
    taps = adapter.taps if taps is True else tuple(taps or ())
    unknown = [t for t in taps if t not in adapter.taps]
    if unknown:
        raise LeapsError(f"{adapter.name} has no tap {unknown[0]!r}; its taps are {', '.join(adapter.taps)}")
    return GraphSpec(adapter.spec.model_size(*size), taps, dtype, max_batch)


def on_cpu(adapter: VideoAdapter, dtype: torch.dtype) -> VideoAdapter:
    """``adapter`` itself if it is on the CPU in ``dtype``, else a copy that is."""
    parameter = next(adapter.parameters(), None)
    if parameter is None or (parameter.dtype == dtype and parameter.device.type == "cpu"):
        return adapter
    return copy.deepcopy(adapter).to(device="cpu", dtype=dtype)


def exportable_module(adapter: VideoAdapter, graph: GraphSpec) -> ForwardOutputs:
    """The module to export, on the CPU in the graph's dtype."""
    return ForwardOutputs(on_cpu(adapter, graph.torch_dtype), graph.taps).eval()


def example_input(graph: GraphSpec, batch: int = EXAMPLE_BATCH, seed: int = 0) -> torch.Tensor:
    """A float32 CPU normal-noise video ``[batch, 3, T, H, W]`` at the graph's size."""
    return torch.randn((batch, 3, *graph.size), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def eager_outputs(adapter: VideoAdapter, graph: GraphSpec, video: torch.Tensor) -> list[torch.Tensor]:
    """What the graph must reproduce, computed by the adapter in float32 on the CPU."""
    outputs = ForwardOutputs(on_cpu(adapter, torch.float32), graph.taps)(video)
    return list(outputs) if isinstance(outputs, tuple) else [outputs]


def sidecar_path(path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def sidecar(
    adapter: VideoAdapter, graph: GraphSpec, export_format: str, weights: str, weights_sha256: str,
    widths: Sequence[int],
) -> dict:
    """The JSON description written next to an exported file: input spec, outputs (``widths``: the size
    of each output's second dimension), versions."""
    spec = adapter.spec
    outputs = []
    for name, tap, width in zip(graph.output_names, (None, *graph.taps), widths, strict=True):
        outputs.append({"name": name, **({"tap": tap} if tap else {}), "shape": ["batch", width]})
    return {
        "format": export_format,
        "model": adapter.name,
        "weights": weights,
        "weights_sha256": weights_sha256,
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, *graph.size], "dtype": graph.dtype,
                  "batch": [1, graph.max_batch], "normalised": True},
        "spec": {"frames": spec.frames, "sampling_rate": spec.sampling_rate, "crop_size": spec.crop_size,
                 "fixed_size": spec.fixed_size, "mean": list(spec.mean), "std": list(spec.std),
                 "class_names": list(spec.class_names)},
        "outputs": outputs,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
