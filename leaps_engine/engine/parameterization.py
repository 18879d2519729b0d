"""x* as parameters: what the optimiser updates, how that maps to the video the model sees, and its bounds.

A parameterisation holds the batch's parameters (one video per seed) and offers three things to the
synthesis loop (:func:`leaps_engine.engine.synthesis.synthesize`):

* :meth:`Parameterization.parameters`: the leaf tensors the optimiser updates;
* :meth:`Parameterization.video`: x* ``[B, 3, T, H, W]`` in the model's normalised space, differentiable
  with respect to the parameters (what the objective is given each step);
* :meth:`Parameterization.project`: called without gradients after each optimiser step, with the learning
  rate of that step, to keep x* valid (and, for ``layers``, to apply its velocities' sparsity).

:class:`PixelParameterization` is the paper's (Sec. 3.1): x* itself, started from N(0, 1) noise and
clamped to the pixel range. :class:`FourierParameterization` optimises a space-time spectrum in
decorrelated colour (``SynthesisConfig.parameterization = "fourier"``). :class:`WarpParameterization`
(``"warp"``) keeps the stimulus's first frame as x*'s appearance and optimises only how it moves: a smooth
displacement field per frame. :class:`~leaps_engine.engine.motion_layers.LayerParameterization`
(``"layers"``) moves that frame's objects, each as a whole. Another parameterisation is one new class with
these three methods, named in :func:`create_parameterization`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import nn

from leaps_engine.config import MOVING_PARAMETERIZATIONS, SynthesisConfig
from leaps_engine.engine.adapters.base import InputSpec
from leaps_engine.engine.motion_layers import (
    LAYER_INIT_SCALE,
    LayerParameterization,
    check_still_frames,
    seeded_velocities,
)
from leaps_engine.errors import LeapsError


class Parameterization(Protocol):
    """What the synthesis loop needs of x*'s parameterisation (see the module docstring)."""

    def parameters(self) -> list[torch.Tensor]: ...

    def video(self) -> torch.Tensor: ...

    def project(self, lr: float) -> None: ...


PIXEL_INIT_SCALE = 1.0  # the paper's start: N(0, 1) in the model's normalised space
FOURIER_INIT_SCALE = 0.6
WARP_INIT_SCALE = 0.1  # pixels per frame


class PixelParameterization:
    """x* as its own pixels in the model's normalised space (the paper's).

    Args:
        seeds: one seed per video; video ``b`` starts from N(0, init_scale^2) noise ``[3, T, H, W]`` drawn
            on the CPU from ``seeds[b]`` (so the start does not depend on the device).
        size: ``(T, H, W)`` of x*.
        spec: the model's input spec, whose normalisation gives the bounds of valid pixels ([0, 1]).
        device: where the parameters live.
        init_scale: standard deviation of the start in the normalised space (paper: 1).
    """

    def __init__(self, seeds: Sequence[int], size: tuple[int, int, int], spec: InputSpec, device: torch.device,
                 init_scale: float = PIXEL_INIT_SCALE):
        noise = [init_scale * torch.randn((3, *size), generator=torch.Generator().manual_seed(seed))
                 for seed in seeds]
        self._video = torch.stack(noise).to(device).requires_grad_(True)  # [B, 3, T, H, W]
        self._low, self._high = (bound.to(device) for bound in spec.pixel_bounds())  # [3, 1, 1, 1] each

    def parameters(self) -> list[torch.Tensor]:
        """The one leaf tensor ``[B, 3, T, H, W]``: x* itself."""
        return [self._video]

    def video(self) -> torch.Tensor:
        """x* ``[B, 3, T, H, W]`` (the parameter itself, no copy)."""
        return self._video

    @torch.no_grad()
    def project(self, lr: float) -> None:
        """Clamp every value to the normalised image of the pixel range [0, 1], per channel."""
        self._video.clamp_(self._low, self._high)


# The square root of ImageNet's colour correlation (its SVD), as Lucid publishes it (Olah et al., "Feature
# Visualization", Distill 2017; lucid/optvis/param/color.py): x* is optimised in these decorrelated colour
# channels and mixed back to RGB, so that every channel's spectrum can be scaled alike.
COLOUR_CORRELATION_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))


class FourierParameterization:
    """x* as a 3-D real spectrum over (T, H, W) in decorrelated colour, mapped to pixels by a sigmoid.

    The video is ``sigmoid(C @ irfftn(A * S))``: ``S`` the parameters ``[B, 3, T, H, W//2 + 1]`` (complex, as
    real and imaginary parts), ``A`` a fixed amplitude per frequency, ``1 / f_s^a * 1 / f_t^b`` for the spatial
    frequency ``f_s = sqrt(f_h^2 + f_w^2)`` and the temporal ``|f_t|`` (cycles per pixel / frame, each at least
    one cycle over the clip), and ``C`` the colour matrix :data:`COLOUR_CORRELATION_SQRT` scaled to columns of
    norm at most 1. With ``a = b = 0`` every frequency starts with the same weight, like white noise in
    pixels; larger exponents favour smooth, slowly changing videos (Olah et al. 2017 for images; the
    temporal exponent is this project's extension to space-time). The pixels are always in (0, 1), so
    :meth:`project` does nothing.

    Args:
        seeds, size, spec, device: as :class:`PixelParameterization`.
        spatial_decay: ``a``, the power of the spatial frequency the amplitudes fall with (Lucid: 1).
        temporal_decay: ``b``, the same along time.
        init_scale: standard deviation of each starting video before the sigmoid (0.6 gives pixels of
            standard deviation about 0.14). A start with almost no variation has an input gradient of
            exactly zero on networks whose first layers see frame differences.
    """

    def __init__(self, seeds: Sequence[int], size: tuple[int, int, int], spec: InputSpec, device: torch.device,
                 spatial_decay: float = 1.0, temporal_decay: float = 1.0, init_scale: float = FOURIER_INIT_SCALE):
        frames, height, width = size
        self._size = size
        self._spec = spec
        f_t = torch.fft.fftfreq(frames).abs()[:, None, None]
        f_h = torch.fft.fftfreq(height)[None, :, None]
        f_w = torch.fft.rfftfreq(width)[None, None, :]
        f_s = torch.sqrt(f_h**2 + f_w**2)
        amplitude = (f_s.clamp(min=1.0 / max(height, width)) ** -spatial_decay
                     * f_t.clamp(min=1.0 / frames) ** -temporal_decay)  # [T, H, W//2 + 1]
        colour = torch.tensor(COLOUR_CORRELATION_SQRT)
        colour = colour / colour.norm(dim=0).max()  # [3 rgb, 3 decorrelated]
        spectra = []
        for seed in seeds:
            noise = torch.randn((3, *amplitude.shape, 2), generator=torch.Generator().manual_seed(seed))
            signal = torch.fft.irfftn(torch.view_as_complex(noise) * amplitude, s=size, dim=(1, 2, 3))
            rgb = torch.einsum("rc,cthw->rthw", colour, signal)
            spectra.append(noise * (init_scale / rgb.std()))  # linear: the start's RGB signal has this std
        self._spectrum = torch.stack(spectra).to(device).requires_grad_(True)  # [B, 3, T, H, W//2 + 1, 2]
        self._amplitude = amplitude.to(device)
        self._colour = colour.to(device)

    def parameters(self) -> list[torch.Tensor]:
        """The spectrum ``[B, 3, T, H, W//2 + 1, 2]`` (real and imaginary parts)."""
        return [self._spectrum]

    def video(self) -> torch.Tensor:
        """x* ``[B, 3, T, H, W]`` in the model's normalised space, differentiable in the spectrum."""
        signal = torch.fft.irfftn(torch.view_as_complex(self._spectrum) * self._amplitude, s=self._size,
                                  dim=(2, 3, 4))  # [B, 3, T, H, W], decorrelated colour
        rgb = torch.einsum("rc,bcthw->brthw", self._colour, signal)
        return self._spec.normalize(torch.sigmoid(rgb))

    def project(self, lr: float) -> None:
        """Nothing to do: the sigmoid keeps every pixel in (0, 1)."""


class WarpParameterization:
    """x* as one still frame moved by an optimised displacement field: only the motion is free.

    Frame ``t`` is the frame ``I`` (the first frame of the video's stimulus) resampled at ``p - D_t(p)``
    (bilinear, edge pixels repeated; ``torch.nn.functional.grid_sample``), so that content at ``p`` moves
    to ``p + D_t(p)`` (exactly where the field is locally uniform, to first order elsewhere). ``D_0 = 0``
    and ``D_t = V_1 + ... + V_t``: the parameters are the velocities ``V`` ``[B, T-1, 2, g, g]`` in pixels
    per frame (x then y) on a coarse ``g x g`` grid, bilinearly upsampled to ``H x W``, so neighbouring
    pixels move together and a region moves as a whole. The appearance cannot change: every frame is
    ``I`` rearranged, its pixels always in [0, 1]. The embedded networks do not read the class from ``I``
    held still (``benchmarks/still_start.py``), so what moves, and how, is what the inverted model asks
    for. (A displacement-field parameterisation of this project's own; the image feature-visualization
    priors, Olah et al. 2017, have no motion to parameterise.)

    Args:
        seeds: one seed per video; video ``b`` starts from velocities N(0, init_scale^2) drawn on the CPU
            from ``seeds[b]``.
        size: ``(T, H, W)`` of x*; at least 2 frames.
        spec, device: as :class:`PixelParameterization`.
        frames: the still frame of each video, pixels ``[B, 3, H, W]`` in [0, 1].
        grid: ``g``, the control points per side of the displacement field.
        init_scale: standard deviation of the starting velocities, in pixels per frame.

    Raises:
        LeapsError: fewer than 2 frames, or frames that are not ``[B, 3, H, W]`` for ``B`` seeds.
    """

    def __init__(self, seeds: Sequence[int], size: tuple[int, int, int], spec: InputSpec, device: torch.device,
                 frames: torch.Tensor, grid: int = 8, init_scale: float = WARP_INIT_SCALE):
        check_still_frames("warp", seeds, size, frames)
        length, height, width = size
        self._velocity = seeded_velocities(seeds, (length - 1, 2, grid, grid), init_scale, device)  # [B, T-1, 2, g, g]
        # Every frame of x* resamples its video's still frame: the stills, one per output frame, made once.
        self._stills = frames.to(device)[:, None].expand(-1, length, -1, -1, -1).reshape(-1, 3, height, width)
        self._size = size
        self._spec = spec
        rows = torch.linspace(-1 + 1 / height, 1 - 1 / height, height)  # pixel centres, align_corners=False
        columns = torch.linspace(-1 + 1 / width, 1 - 1 / width, width)
        grid_y, grid_x = torch.meshgrid(rows, columns, indexing="ij")
        self._identity = torch.stack([grid_x, grid_y], dim=-1).to(device)  # [H, W, 2] as grid_sample's (x, y)
        self._pixels_to_grid = torch.tensor([2.0 / width, 2.0 / height], device=device)

    def parameters(self) -> list[torch.Tensor]:
        """The velocities ``[B, T-1, 2, g, g]`` in pixels per frame (x, y)."""
        return [self._velocity]

    def displacement(self) -> torch.Tensor:
        """``D`` ``[B, T, H, W, 2]`` in pixels (x, y): where each frame's content has moved since frame 0."""
        length, height, width = self._size
        steps = torch.cat([torch.zeros_like(self._velocity[:, :1]), self._velocity], dim=1)  # [B, T, 2, g, g]
        dense = nn.functional.interpolate(steps.cumsum(dim=1).flatten(0, 1), size=(height, width),
                                          mode="bilinear", align_corners=False)  # [B*T, 2, H, W]
        return dense.unflatten(0, (-1, length)).permute(0, 1, 3, 4, 2)

    def video(self) -> torch.Tensor:
        """x* ``[B, 3, T, H, W]`` in the model's normalised space, differentiable in the velocities."""
        sample_at = self._identity - self.displacement() * self._pixels_to_grid  # [B, T, H, W, 2]
        frames = nn.functional.grid_sample(self._stills, sample_at.flatten(0, 1), mode="bilinear",
                                           padding_mode="border", align_corners=False)  # [B*T, 3, H, W]
        return self._spec.normalize(frames.unflatten(0, (-1, self._size[0])).transpose(1, 2))

    def project(self, lr: float) -> None:
        """Nothing to do: resampled pixels of a valid frame stay in [0, 1]."""


def create_parameterization(config: SynthesisConfig, seeds: Sequence[int], spec: InputSpec,
                            device: torch.device, stimuli: Sequence[torch.Tensor | None] = ()) -> Parameterization:
    """The parameterisation ``config.parameterization`` names (``pixel``, ``fourier``, ``warp`` or ``layers``),
    for a batch of one row per seed at ``config.size``, ``config.restarts`` consecutive rows per video;
    ``config.init_scale`` ``None`` takes its own default. ``stimuli``: per row, its video's (first) stimulus,
    pixels ``[3, T, H, W]`` at ``config.size``; ``warp`` and ``layers`` start from each one's first frame and
    raise :class:`LeapsError` when one is missing."""
    if config.parameterization in MOVING_PARAMETERIZATIONS:
        if len(stimuli) != len(seeds) or any(stimulus is None for stimulus in stimuli):
            raise LeapsError(f"the {config.parameterization} parameterisation moves the first frame of each "
                             "video's stimulus, and a video has no stimulus")
        frames = torch.stack([stimulus[:, 0] for stimulus in stimuli])  # [B, 3, H, W]
        if config.parameterization == "layers":
            return LayerParameterization(seeds, config.size, spec, device, frames,
                                         config.init_scale or LAYER_INIT_SCALE, config.moving_layers,
                                         config.restarts, config.motion_sparsity)
        return WarpParameterization(seeds, config.size, spec, device, frames, config.warp_grid,
                                    config.init_scale or WARP_INIT_SCALE)
    if config.parameterization == "fourier":
        return FourierParameterization(seeds, config.size, spec, device, config.spatial_decay,
                                       config.temporal_decay, config.init_scale or FOURIER_INIT_SCALE)
    return PixelParameterization(seeds, config.size, spec, device, config.init_scale or PIXEL_INIT_SCALE)
