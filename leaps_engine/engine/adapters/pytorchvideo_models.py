"""pytorchvideo's Kinetics-400 hub models: X3D, Slow, CSN, R(2+1)D and MViT.

Only ``pytorchvideo.models`` is imported (``pytorchvideo.transforms`` breaks with current torchvision).
Three changes make the hub models fit the engine, none touching a weight:

* heads return logits: X3D and R(2+1)D heads apply a softmax per position before averaging; it is removed,
  so their outputs are the averaged logits;
* pytorchvideo's ``Swish`` (an autograd Function) becomes ``nn.SiLU`` (the same function, traceable);
* layer geometry (kernel size, stride, padding, dilation) holds Python ints: the ResNet builders leave
  NumPy integers in some shortcut strides, which ``torch.compile`` (torch 2.11) traces as tensors that
  Inductor cannot lower (``aten._local_scalar_dense`` in ``conv3d``), breaking the graph at every stage.

Specs follow the pytorchvideo model zoo (frame length x sampling rate) and the sizes the hub builds the
models for. X3D and MViT are fixed-size, as in the paper (Sec. 4.1). The other ResNet-style heads
average-pool with a kernel fixed at build time and then average the result globally, so they take any
size at least that kernel's receptive field (``min_frames`` x ``min_size``, found by trying); at exactly
``frames`` x ``crop_size`` the pool is a plain global average.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable

from torch import nn

with warnings.catch_warnings():  # pytorchvideo 0.1.5 calls the deprecated torch.jit.script at import time
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    from pytorchvideo.models import hub
    from pytorchvideo.models.head import ResNetBasicHead
    from pytorchvideo.models.x3d import Swish  # pytorchvideo.layers.swish.Swish, as X3D imports it

from leaps_engine.engine.adapters.base import InputSpec
from leaps_engine.engine.adapters.kinetics import (
    KINETICS400,
    KINETICS400_CLASSES,
    KINETICS_MEAN,
    KINETICS_STD,
    build_kinetics_model,
)
from leaps_engine.engine.adapters.registry import AdapterParts, register_adapter


def _spec(
    frames: int, sampling_rate: int, crop_size: int, min_frames: int, min_size: int, fixed_size: bool = False
) -> InputSpec:
    """A pytorchvideo Kinetics-400 spec: ``frames`` frames ``sampling_rate`` apart, ``crop_size`` square."""
    return InputSpec(
        frames=frames,
        sampling_rate=sampling_rate,
        crop_size=crop_size,
        fixed_size=fixed_size,
        mean=KINETICS_MEAN,
        std=KINETICS_STD,
        class_names=KINETICS400_CLASSES,
        min_frames=min_frames,
        min_size=min_size,
    )


def _resnet_taps(model: nn.Module) -> list[str]:
    """The stem (``blocks.0``) and every residual block of every stage; the last is the final feature map."""
    blocks = [
        f"blocks.{i}.res_blocks.{j}"
        for i, stage in enumerate(model.blocks)
        if hasattr(stage, "res_blocks")
        for j in range(len(stage.res_blocks))
    ]
    return ["blocks.0"] + blocks


def _x3d_taps(model: nn.Module) -> list[str]:
    """Stem, every residual block, and the head's expanded map before pooling ``[B, 432, T, H/32, W/32]``."""
    return _resnet_taps(model) + [f"blocks.{len(model.blocks) - 1}.pool.pre_act"]


def _mvit_taps(model: nn.Module) -> list[str]:
    """Every transformer block (each returns ``(tokens, [T, H, W])``, class token first)."""
    return [f"blocks.{i}" for i in range(len(model.blocks))]


GEOMETRY_ATTRIBUTES = ("kernel_size", "stride", "padding", "dilation")


def _make_engine_ready(model: nn.Module) -> None:
    """Drop softmax head activations (logits out), swap every ``Swish`` for ``nn.SiLU`` and make layer
    geometry plain Python ints, in place."""
    for module in model.modules():
        if isinstance(module, ResNetBasicHead):
            module.activation = None
        for child_name, child in module.named_children():
            if isinstance(child, Swish):
                setattr(module, child_name, nn.SiLU())
        for attribute in GEOMETRY_ATTRIBUTES:
            value = getattr(module, attribute, None)
            if isinstance(value, (tuple, list)):
                setattr(module, attribute, type(value)(_python_int(v) for v in value))
            elif value is not None:
                setattr(module, attribute, _python_int(value))


def _python_int(value: object) -> object:
    """``value`` as a Python ``int`` when it is a NumPy (or other non-``int``) integer, else unchanged."""
    if isinstance(value, numbers.Integral) and type(value) is not int and not isinstance(value, bool):
        return int(value)
    return value


def _build(
    name: str,
    weights: str,
    hub_builder: Callable[..., nn.Module],
    taps: Callable[[nn.Module], list[str]],
    tap_format: str,
) -> AdapterParts:
    """Build the hub model with ``weights`` (``"kinetics400"`` downloads through torch.hub) and adapt it."""
    model = build_kinetics_model(name, weights, lambda download: hub_builder(pretrained=download))
    _make_engine_ready(model)
    return AdapterParts(model, taps(model), tap_format)


# X3D: the hub builds XS/S for 160x160 and M/L for 224/312, their training crops. Fixed size, as the paper
# treats X3D (Sec. 4.1: x* is interpolated to the model's input): frames and crop of the Kinetics recipe.
@register_adapter(family="pytorchvideo", spec=_spec(4, 12, 160, 4, 160, fixed_size=True), pretrained=KINETICS400)
def x3d_xs(weights: str) -> AdapterParts:
    """X3D-XS 4x12 (Feichtenhofer 2020), 160x160 input; Kinetics-400 top-1 69.1%."""
    return _build("x3d_xs", weights, hub.x3d_xs, _x3d_taps, "cthw")


@register_adapter(family="pytorchvideo", spec=_spec(13, 6, 160, 13, 160, fixed_size=True), pretrained=KINETICS400)
def x3d_s(weights: str) -> AdapterParts:
    """X3D-S 13x6 (Feichtenhofer 2020), 160x160 input; Kinetics-400 top-1 73.3%."""
    return _build("x3d_s", weights, hub.x3d_s, _x3d_taps, "cthw")


@register_adapter(family="pytorchvideo", spec=_spec(16, 5, 224, 16, 224, fixed_size=True), pretrained=KINETICS400)
def x3d_m(weights: str) -> AdapterParts:
    """X3D-M 16x5 (Feichtenhofer 2020), 224x224 input; Kinetics-400 top-1 75.9%."""
    return _build("x3d_m", weights, hub.x3d_m, _x3d_taps, "cthw")


@register_adapter(family="pytorchvideo", spec=_spec(16, 5, 312, 16, 312, fixed_size=True), pretrained=KINETICS400)
def x3d_l(weights: str) -> AdapterParts:
    """X3D-L 16x5 (Feichtenhofer 2020), 312x312 input; Kinetics-400 top-1 77.4%."""
    return _build("x3d_l", weights, hub.x3d_l, _x3d_taps, "cthw")


@register_adapter(family="pytorchvideo", spec=_spec(8, 8, 224, 8, 193), pretrained=KINETICS400)
def slow_r50(weights: str) -> AdapterParts:
    """Slow-only ResNet-50 8x8 (Feichtenhofer et al. 2019), 224x224 input; Kinetics-400 top-1 74.6%."""
    return _build("slow_r50", weights, hub.slow_r50, _resnet_taps, "cthw")


@register_adapter(family="pytorchvideo", spec=_spec(32, 2, 224, 25, 193), pretrained=KINETICS400)
def csn_r101(weights: str) -> AdapterParts:
    """ir-CSN ResNet-101 32x2 (Tran et al. 2019), 224x224 input; Kinetics-400 top-1 77.0%."""
    return _build("csn_r101", weights, hub.csn_r101, _resnet_taps, "cthw")


@register_adapter(family="pytorchvideo", spec=_spec(16, 4, 224, 13, 193), pretrained=KINETICS400)
def r2plus1d_r50(weights: str) -> AdapterParts:
    """R(2+1)D ResNet-50 16x4 (Tran et al. 2018), 224x224 input; Kinetics-400 top-1 76.0%."""
    return _build("r2plus1d_r50", weights, hub.r2plus1d_r50, _resnet_taps, "cthw")


# MViT-B: space-time positional embeddings are sized for 16x224x224, so the size is fixed.
@register_adapter(family="pytorchvideo", spec=_spec(16, 4, 224, 16, 224, fixed_size=True), pretrained=KINETICS400)
def mvit_base_16x4(weights: str) -> AdapterParts:
    """MViT-B 16x4 (Fan et al. 2021), fixed 16x224x224; Kinetics-400 top-1 78.9%."""
    return _build("mvit_base_16x4", weights, hub.mvit_base_16x4, _mvit_taps, "tokens")
