"""A frozen video classifier with its input spec and its priming taps.

An adapter wraps any video classifier so that the engine sees one interface:

* ``adapter.spec`` says what the model expects (frames, sampling rate, crop size, whether the size is
  fixed, mean/std, class names);
* ``adapter(x)`` returns logits ``[B, K]`` for a normalised video ``x`` of shape ``[B, 3, T, H, W]``;
* ``adapter.forward_with_taps(x)`` also returns the activation of every tap, each in the canonical layout
  ``[B, C, T', N]`` (channels, frames, spatial positions), whatever the model's own layout is.

Taps are read with forward hooks that live only for one call (registered, read, removed in ``finally``),
so no hook state outlives a forward pass and the adapter holds no global state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from leaps_engine.errors import LeapsError, close_names


@dataclass(frozen=True)
class InputSpec:
    """What a model expects as input, and what its outputs mean.

    ``frames`` x ``crop_size``^2 is the clip the model was trained on; ``sampling_rate`` is the stride
    between sampled source frames. A ``fixed_size`` model only takes that size, so the adapter resizes
    every input to it (paper Sec. 4.1); other models take any size of at least ``min_frames`` x
    ``min_size``^2, and the adapter resizes a smaller input up to that minimum.
    """

    frames: int
    sampling_rate: int
    crop_size: int
    fixed_size: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...]
    min_frames: int = 1
    min_size: int = 1

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _statistics(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std as ``[3, 1, 1, 1]`` tensors with the dtype and device of ``like``."""
        return like.new_tensor(self.mean).view(3, 1, 1, 1), like.new_tensor(self.std).view(3, 1, 1, 1)

    def pixel_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel bounds ``[3, 1, 1, 1]`` of valid pixels ([0, 1]) in this spec's normalised space."""
        return self.normalize(torch.zeros(3, 1, 1, 1)), self.normalize(torch.ones(3, 1, 1, 1))

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Map pixels in [0, 1] (``[..., 3, T, H, W]``) to the model's normalised space."""
        mean, std = self._statistics(pixels)
        return (pixels - mean) / std

    def denormalize(self, video: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`."""
        mean, std = self._statistics(video)
        return video * std + mean

    def model_size(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """The size a ``frames x height x width`` input is resized to before the model sees it."""
        if self.fixed_size:
            return self.frames, self.crop_size, self.crop_size
        return max(frames, self.min_frames), max(height, self.min_size), max(width, self.min_size)


def canonical_cthw(output: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, H, W]`` (3D CNN feature map) -> ``[B, C, T, H*W]``."""
    return output.flatten(3)


def canonical_thwc(output: torch.Tensor) -> torch.Tensor:
    """``[B, T, H, W, C]`` (Video Swin) -> ``[B, C, T, H*W]``."""
    return output.flatten(2, 3).permute(0, 3, 1, 2)


def canonical_tokens(output: tuple[torch.Tensor, Sequence[int]]) -> torch.Tensor:
    """``(tokens [B, 1 + T*H*W, C], (T, H, W))`` (MViT blocks) -> ``[B, C, T, H*W]``, class token dropped.

    This is the paper's reshape of transformer features to C' x T' x H'W' (Section 3.2).
    """
    tokens, thw = output[0], output[1]
    frames, height, width = (int(v) for v in thw)
    patches = tokens[:, tokens.shape[1] - frames * height * width :]
    return patches.reshape(patches.shape[0], frames, height * width, patches.shape[2]).permute(0, 3, 1, 2)


TAP_FORMATS: dict[str, Callable[..., torch.Tensor]] = {
    "cthw": canonical_cthw,
    "thwc": canonical_thwc,
    "tokens": canonical_tokens,
}


class VideoAdapter(nn.Module):
    """A frozen, eval-mode video classifier with declared taps.

    Args:
        name: registry name of the model.
        spec: the model's input spec.
        model: the classifier; its forward maps ``[B, 3, T, H, W]`` to logits ``[B, K]``.
        taps: qualified module names, in forward order, whose outputs are the priming features; the last
            one is also used for temporal coherence.
        tap_format: layout of the tap outputs, a key of :data:`TAP_FORMATS`.
        weights: the weights it was built with: its pretrained name, ``"random"`` or a checkpoint path.
        stimulus_source: ``(class index, seed) -> pixels [3, T, H, W]`` for models whose domain makes its
            own stimuli (the embedded ones), else ``None``.
    """

    def __init__(self, name: str, spec: InputSpec, model: nn.Module, taps: Sequence[str], tap_format: str,
                 weights: str = "random", stimulus_source: Callable[[int, int], torch.Tensor] | None = None):
        super().__init__()
        modules = dict(model.named_modules())
        for tap in taps:
            if tap not in modules:
                raise LeapsError(f"{name} has no layer {tap!r}{close_names(tap, modules)}")
        if tap_format not in TAP_FORMATS:
            raise ValueError(f"unknown tap format {tap_format!r}; expected one of {sorted(TAP_FORMATS)}")
        self.name = name
        self.spec = spec
        self.model = model
        self.taps = tuple(taps)
        self.tap_format = tap_format
        self.weights = weights
        self.stimulus_source = stimulus_source
        self.model.eval()
        self.model.requires_grad_(False)

    def train(self, mode: bool = True) -> VideoAdapter:
        """Adapters stay in eval mode: BatchNorm uses running statistics and dropout is off."""
        return super().train(False)

    def fit_input(self, video: torch.Tensor) -> torch.Tensor:
        """Resize ``[B, 3, T, H, W]`` trilinearly to the size the model takes (:meth:`InputSpec.model_size`)."""
        size = self.spec.model_size(*video.shape[2:])
        if tuple(video.shape[2:]) == size:
            return video
        return nn.functional.interpolate(video, size=size, mode="trilinear", align_corners=False)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K]`` for a normalised video ``[B, 3, T, H, W]``."""
        return self.model(self.fit_input(video))

    def forward_with_taps(
        self, video: torch.Tensor, taps: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits ``[B, K]`` and the requested taps (default: all), each ``[B, C, T', N]``, in forward order."""
        names = self.taps if taps is None else tuple(taps)
        with record_outputs(self.model, names) as outputs:
            logits = self.model(self.fit_input(video))
        to_canonical = TAP_FORMATS[self.tap_format]
        return logits, [to_canonical(outputs[name]) for name in names]


    @torch.no_grad()
    def tap_shapes(self, size: tuple[int, int, int]) -> dict[str, tuple[int, int, int]]:
        """``[C, T', N]`` of every tap when the adapter is given a video of ``size`` = (T, H, W) (resized
        as :meth:`fit_input` does); one forward pass of a zero video at batch 1 on the adapter's device."""
        device = next(self.parameters()).device
        _, values = self.forward_with_taps(torch.zeros((1, 3, *size), device=device))
        return {name: tuple(value.shape[1:]) for name, value in zip(self.taps, values, strict=True)}


@contextlib.contextmanager
def record_outputs(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, object]]:
    """Record the outputs of the named submodules during the forward passes run inside the block.

    The hooks are removed when the block exits, even on error. The dict is local to this call.
    """
    modules = dict(model.named_modules())
    outputs: dict[str, object] = {}
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, args: object, output: object) -> None:
            outputs[name] = output

        return hook

    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(make_hook(name)))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def record_inputs(modules: Sequence[nn.Module]) -> Iterator[list[tuple[nn.Module, torch.Tensor]]]:
    """Record ``(module, first input)`` for each call of the given modules (e.g. every BatchNorm3d)."""
    inputs: list[tuple[nn.Module, torch.Tensor]] = []
    handles = []

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        inputs.append((module, args[0]))

    try:
        for module in modules:
            handles.append(module.register_forward_pre_hook(hook))
        yield inputs
    finally:
        for handle in handles:
            handle.remove()
