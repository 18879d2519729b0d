"""torchvision's Kinetics-400 video classifiers: video ResNets, S3D, MViT and Video Swin.

Crop size, mean/std and minimum sizes come from each weights enum's ``transforms()`` and ``meta``. Clip
length and sampling rate come from the weights' docs and torchvision's video recipe: clips are sampled at
``frame_rate`` fps from Kinetics videos of ~30 fps, so the sampling rate is ``30 / frame_rate``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision.models import WeightsEnum, video

from leaps_engine.engine.adapters.base import InputSpec
from leaps_engine.engine.adapters.kinetics import KINETICS400, KINETICS400_CLASSES, build_kinetics_model
from leaps_engine.engine.adapters.registry import AdapterParts, register_adapter


def _spec(weights: WeightsEnum, frames: int, sampling_rate: int, fixed_size: bool = False) -> InputSpec:
    """The input spec of a model trained on ``frames`` frames ``sampling_rate`` apart, read from its weights."""
    transforms = weights.transforms()
    return InputSpec(
        frames=frames,
        sampling_rate=sampling_rate,
        crop_size=transforms.crop_size[0],
        fixed_size=fixed_size,
        mean=tuple(transforms.mean),
        std=tuple(transforms.std),
        class_names=KINETICS400_CLASSES,
        min_frames=weights.meta.get("min_temporal_size") or 1,
        min_size=weights.meta["min_size"][0],
    )


def _children(model: nn.Module, path: str, skip: tuple[type, ...] = ()) -> list[str]:
    """Qualified names of the children of ``model.<path>`` that are not of a ``skip`` type, in order."""
    parent = model.get_submodule(path)
    return [f"{path}.{name}" for name, child in parent.named_children() if not isinstance(child, skip)]


def _resnet_taps(model: nn.Module) -> list[str]:
    """The stem and every residual block; the last is the final feature map ``[B, 512, T', H/16, W/16]``."""
    return ["stem"] + [tap for layer in ("layer1", "layer2", "layer3", "layer4") for tap in _children(model, layer)]


def _s3d_taps(model: nn.Module) -> list[str]:
    """Every convolution and inception block of ``features`` (pooling layers skipped)."""
    return _children(model, "features", skip=(nn.MaxPool3d,))


def _mvit_taps(model: nn.Module) -> list[str]:
    """Every transformer block (each returns ``(tokens, (T, H, W))``)."""
    return _children(model, "blocks")


def _swin_taps(model: nn.Module) -> list[str]:
    """The patch embedding, every Swin block and the final norm, all ``[B, T, H, W, C]``."""
    stages = [name for name, child in model.features.named_children() if isinstance(child, nn.Sequential)]
    return ["patch_embed"] + [tap for stage in stages for tap in _children(model, f"features.{stage}")] + ["norm"]


def _build(
    name: str,
    weights: str,
    builder: Callable[..., nn.Module],
    pretrained: WeightsEnum,
    taps: Callable[[nn.Module], list[str]],
    tap_format: str,
) -> AdapterParts:
    """Build ``builder`` with ``weights`` (``pretrained`` is the enum member behind ``"kinetics400"``)."""
    model = build_kinetics_model(name, weights, lambda download: builder(weights=pretrained if download else None))
    return AdapterParts(model, taps(model), tap_format)


# Video ResNets: recipe `--clip-len 16 --frame-rate 15` -> 16 frames, rate 2, any size.
_R3D_18 = video.R3D_18_Weights.KINETICS400_V1
_MC3_18 = video.MC3_18_Weights.KINETICS400_V1
_R2PLUS1D_18 = video.R2Plus1D_18_Weights.KINETICS400_V1
# S3D: trained with `--clip-len 64 --frame-rate 15` (evaluated with 128 frames) -> 64 frames, rate 2.
_S3D = video.S3D_Weights.KINETICS400_V1
# MViT (ported from PySlowFast 16x4): `frame_rate=7.5, clip_len=16` -> 16 frames, rate 4; positional
# embeddings (v1) and pooled relative positions (v2) are sized for 16x224x224, so the size is fixed.
_MVIT_V1_B = video.MViT_V1_B_Weights.KINETICS400_V1
_MVIT_V2_S = video.MViT_V2_S_Weights.KINETICS400_V1
# Video Swin (ported, 32x2 recipe): `frame_rate=15, clip_len=32` -> 32 frames, rate 2. Its windows pad and
# shrink, so it would run at any size, but the paper treats it as fixed-size (Sec. 4.1), and so does this.
_SWIN3D_T = video.Swin3D_T_Weights.KINETICS400_V1
_SWIN3D_S = video.Swin3D_S_Weights.KINETICS400_V1
_SWIN3D_B = video.Swin3D_B_Weights.KINETICS400_V1


@register_adapter(family="torchvision", spec=_spec(_R3D_18, 16, 2), pretrained=KINETICS400)
def r3d_18(weights: str) -> AdapterParts:
    """R3D-18: 3D ResNet-18 (Tran et al. 2018), 112x112 input; Kinetics-400 top-1 63.2%."""
    return _build("r3d_18", weights, video.r3d_18, _R3D_18, _resnet_taps, "cthw")


@register_adapter(family="torchvision", spec=_spec(_MC3_18, 16, 2), pretrained=KINETICS400)
def mc3_18(weights: str) -> AdapterParts:
    """MC3-18: mixed 3D/2D ResNet-18 (Tran et al. 2018), 112x112 input; Kinetics-400 top-1 64.0%."""
    return _build("mc3_18", weights, video.mc3_18, _MC3_18, _resnet_taps, "cthw")


@register_adapter(family="torchvision", spec=_spec(_R2PLUS1D_18, 16, 2), pretrained=KINETICS400)
def r2plus1d_18(weights: str) -> AdapterParts:
    """R(2+1)D-18: factorised 3D ResNet-18 (Tran et al. 2018), 112x112 input; Kinetics-400 top-1 67.5%."""
    return _build("r2plus1d_18", weights, video.r2plus1d_18, _R2PLUS1D_18, _resnet_taps, "cthw")


@register_adapter(family="torchvision", spec=_spec(_S3D, 64, 2), pretrained=KINETICS400)
def s3d(weights: str) -> AdapterParts:
    """S3D: separable 3D Inception (Xie et al. 2018), 224x224 input; Kinetics-400 top-1 68.4%."""
    return _build("s3d", weights, video.s3d, _S3D, _s3d_taps, "cthw")


@register_adapter(family="torchvision", spec=_spec(_MVIT_V1_B, 16, 4, fixed_size=True), pretrained=KINETICS400)
def mvit_v1_b(weights: str) -> AdapterParts:
    """MViT-B 16x4: multiscale vision transformer (Fan et al. 2021), fixed 16x224x224; Kinetics-400 top-1 78.5%."""
    return _build("mvit_v1_b", weights, video.mvit_v1_b, _MVIT_V1_B, _mvit_taps, "tokens")


@register_adapter(family="torchvision", spec=_spec(_MVIT_V2_S, 16, 4, fixed_size=True), pretrained=KINETICS400)
def mvit_v2_s(weights: str) -> AdapterParts:
    """MViTv2-S 16x4: improved MViT (Li et al. 2022), fixed 16x224x224; Kinetics-400 top-1 80.8%."""
    return _build("mvit_v2_s", weights, video.mvit_v2_s, _MVIT_V2_S, _mvit_taps, "tokens")


@register_adapter(family="torchvision", spec=_spec(_SWIN3D_T, 32, 2, fixed_size=True), pretrained=KINETICS400)
def swin3d_t(weights: str) -> AdapterParts:
    """Swin3D-T: Video Swin Transformer tiny (Liu et al. 2022), 224x224 input; Kinetics-400 top-1 77.7%."""
    return _build("swin3d_t", weights, video.swin3d_t, _SWIN3D_T, _swin_taps, "thwc")


@register_adapter(family="torchvision", spec=_spec(_SWIN3D_S, 32, 2, fixed_size=True), pretrained=KINETICS400)
def swin3d_s(weights: str) -> AdapterParts:
    """Swin3D-S: Video Swin Transformer small (Liu et al. 2022), 224x224 input; Kinetics-400 top-1 79.5%."""
    return _build("swin3d_s", weights, video.swin3d_s, _SWIN3D_S, _swin_taps, "thwc")


@register_adapter(family="torchvision", spec=_spec(_SWIN3D_B, 32, 2, fixed_size=True), pretrained=KINETICS400)
def swin3d_b(weights: str) -> AdapterParts:
    """Swin3D-B: Video Swin Transformer base (Liu et al. 2022), 224x224 input; Kinetics-400 top-1 79.4%."""
    return _build("swin3d_b", weights, video.swin3d_b, _SWIN3D_B, _swin_taps, "thwc")
