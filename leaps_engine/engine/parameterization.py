"""x* as parameters: what the optimiser updates, how that maps to the video the model sees, and its bounds.

A parameterisation holds the batch's parameters (one video per seed) and offers three things to the
synthesis loop (:func:`leaps_engine.engine.synthesis.synthesize`):

* :meth:`Parameterization.parameters`: the leaf tensors the optimiser updates;
* :meth:`Parameterization.video`: x* ``[B, 3, T, H, W]`` in the model's normalised space, differentiable
  with respect to the parameters (what the objective is given each step);
* :meth:`Parameterization.project`: called without gradients after each optimiser step, to keep x* valid.

:class:`PixelParameterization` is the paper's (Sec. 3.1): x* itself, started from N(0, 1) noise and
clamped to the pixel range. Another parameterisation is one new class with these three methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from leaps_engine.engine.adapters.base import InputSpec


class Parameterization(Protocol):
    """What the synthesis loop needs of x*'s parameterisation (see the module docstring)."""

    def parameters(self) -> list[torch.Tensor]: ...

    def video(self) -> torch.Tensor: ...

    def project(self) -> None: ...


class PixelParameterization:
    """x* as its own pixels in the model's normalised space (the paper's).

    Args:
        seeds: one seed per video; video ``b`` starts from N(0, 1) noise ``[3, T, H, W]`` drawn on the CPU
            from ``seeds[b]`` (so the start does not depend on the device).
        size: ``(T, H, W)`` of x*.
        spec: the model's input spec, whose normalisation gives the bounds of valid pixels ([0, 1]).
        device: where the parameters live.
    """

    def __init__(self, seeds: Sequence[int], size: tuple[int, int, int], spec: InputSpec, device: torch.device):
        noise = [torch.randn((3, *size), generator=torch.Generator().manual_seed(seed)) for seed in seeds]
        self._video = torch.stack(noise).to(device).requires_grad_(True)  # [B, 3, T, H, W]
        self._low, self._high = (bound.to(device) for bound in spec.pixel_bounds())  # [3, 1, 1, 1] each

    def parameters(self) -> list[torch.Tensor]:
        """The one leaf tensor ``[B, 3, T, H, W]``: x* itself."""
        return [self._video]

    def video(self) -> torch.Tensor:
        """x* ``[B, 3, T, H, W]`` (the parameter itself, no copy)."""
        return self._video

    @torch.no_grad()
    def project(self) -> None:
        """Clamp every value to the normalised image of the pixel range [0, 1], per channel."""
        self._video.clamp_(self._low, self._high)
