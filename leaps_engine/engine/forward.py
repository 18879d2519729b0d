"""The forward-backend interface: every forward-only pass of an adapter, and its torch implementation.

A forward backend offers

* ``logits(video) -> [B, K]`` and
* ``tap_means(video, taps) -> (logits [B, K], [per tap: channel means [B, C]])``

for a normalised video ``[B, 3, T, H, W]`` on the adapter's device, float32 out. :class:`TorchForward` runs
the adapter itself; :mod:`leaps_engine.export.backends` adds backends that run an ONNX export of it
(ONNX Runtime, TensorRT). Synthesis takes any of them for the stimuli's priming features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from leaps_engine.engine.adapters.base import VideoAdapter
from leaps_engine.engine.step import AUTOCAST_DTYPES


class ForwardBackend(Protocol):
    """What every forward backend offers (see the module docstring)."""

    name: str
    adapter: VideoAdapter

    def logits(self, video: torch.Tensor) -> torch.Tensor: ...

    def tap_means(self, video: torch.Tensor, taps: Sequence[str]) -> tuple[torch.Tensor, list[torch.Tensor]]: ...


class TorchForward:
    """The adapter itself, without gradients."""

    name = "torch"

    def __init__(self, adapter: VideoAdapter, dtype: str | None = None):
        self.adapter = adapter
        self.dtype = dtype or "float32"

    @torch.no_grad()
    def logits(self, video: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.adapter(video).float()

    @torch.no_grad()
    def tap_means(self, video: torch.Tensor, taps: Sequence[str]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with self._autocast():
            logits, values = self.adapter.forward_with_taps(video, taps)
            return logits.float(), [value.float().mean(dim=(2, 3)) for value in values]

    def _autocast(self) -> torch.autocast:
        """Autocast to ``dtype``, off for float32."""
        device_type = next(self.adapter.parameters()).device.type
        return torch.autocast(device_type, dtype=AUTOCAST_DTYPES[self.dtype], enabled=self.dtype != "float32")
