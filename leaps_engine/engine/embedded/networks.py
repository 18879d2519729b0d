"""The embedded classifier and verifier: two small, differently built video networks with BatchNorm.

Both map a normalised clip ``[B, 3, T, H, W]`` to logits ``[B, K]`` and accept any size (adaptive pooling).
Their taps are ``stem`` and ``block1``..``block3``, each giving ``[B, C, T', H', W']``; for 8 x 32^2 input the
last block keeps T' = 4 frames.

Both start with :class:`TemporalDelta`, a parameter-free, invertible re-coding of the clip as its first
frame followed by frame-to-frame differences. The networks still see everything (appearance included), but
motion is no longer swamped by the per-clip random appearance. Trained on raw frames, the classifier stayed
at chance for all 800 steps of a trial and the verifier left chance after 250 steps in one trial and never
in another; with the re-coding both pass 85% training accuracy within 150 steps.

* :class:`EmbeddedClassifier`: a plain 3D CNN, full 3x3x3 convolutions (5x5 spatial in the stem).
* :class:`EmbeddedVerifier`: a 3D ResNet (residual blocks of two 3x3x3 convolutions), with its own widths.
* :class:`EmbeddedEvaluator`: the independent judge of quality measurements, never used in synthesis:
  a 3D CNN with GroupNorm instead of BatchNorm (so matching BatchNorm statistics cannot fit it) and
  global max pooling, trained on its own stream of clips with pixel noise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from leaps_engine.engine.embedded.generator import CLASS_NAMES


def conv_norm_relu(
    in_channels: int, out_channels: int, kernel: tuple[int, int, int], stride: tuple[int, int, int],
    norm: Callable[[int], nn.Module] = nn.BatchNorm3d,
) -> nn.Sequential:
    """Conv3d (padded to keep the size at stride 1) -> ``norm(out_channels)`` (BatchNorm3d) -> ReLU."""
    padding = tuple(k // 2 for k in kernel)
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel, stride, padding, bias=False),
        norm(out_channels),
        nn.ReLU(),
    )


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 8 groups, the evaluator's normalisation."""
    return nn.GroupNorm(8, channels)


class TemporalDelta(nn.Module):
    """``[B, C, T, H, W]`` -> the same shape: frame 0, then frame t minus frame t-1 for t >= 1."""

    def forward(self, video: Tensor) -> Tensor:
        return torch.cat([video[:, :, :1], video[:, :, 1:] - video[:, :, :-1]], 2)


class EmbeddedClassifier(nn.Module):
    """Plain 3D CNN: 8x32^2 -> stem 16x8x16^2 -> 32x8x8^2 -> 64x4x4^2 -> 96x4x4^2 -> pool -> linear."""

    def __init__(self, num_classes: int = len(CLASS_NAMES)):
        super().__init__()
        self.delta = TemporalDelta()
        self.stem = conv_norm_relu(3, 16, (3, 5, 5), (1, 2, 2))
        self.block1 = conv_norm_relu(16, 32, (3, 3, 3), (1, 2, 2))
        self.block2 = conv_norm_relu(32, 64, (3, 3, 3), (2, 2, 2))
        self.block3 = conv_norm_relu(64, 96, (3, 3, 3), (1, 1, 1))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(96, num_classes)

    def forward(self, video: Tensor) -> Tensor:  # [B, 3, T, H, W] -> [B, K]
        features = self.block3(self.block2(self.block1(self.stem(self.delta(video)))))
        return self.head(self.pool(features).flatten(1))


class ResidualBlock3d(nn.Module):
    """ResNet basic block in 3D (He et al. 2016; Hara et al. 2018): 3x3x3 conv -> BN -> ReLU -> 3x3x3 conv
    -> BN, plus a shortcut, then ReLU. The first conv carries the stride; the shortcut is a strided 1x1x1
    conv + BN when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int, int]):
        super().__init__()
        self.conv1 = conv_norm_relu(in_channels, out_channels, (3, 3, 3), stride)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels or stride != (1, 1, 1):
            self.shortcut = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm3d(out_channels)
            )
        self.relu = nn.ReLU()

    def forward(self, features: Tensor) -> Tensor:  # [B, C, T, H, W] -> [B, C', T', H', W']
        residual = self.bn2(self.conv2(self.conv1(features)))
        return self.relu(residual + self.shortcut(features))


class EmbeddedVerifier(nn.Module):
    """3D ResNet: 8x32^2 -> stem 24x8x16^2 -> 32x8x8^2 -> 48x4x4^2 -> 64x4x4^2 -> pool -> linear.

    A 3x5x5 stem, then three :class:`ResidualBlock3d`. Residual (2+1)D verifiers, whose convolutions were
    factorised into spatial and temporal ones, read most counterclockwise rotations as clockwise once
    trained adversarially (``docs/embedded.md`` has the runs)."""

    def __init__(self, num_classes: int = len(CLASS_NAMES)):
        super().__init__()
        self.delta = TemporalDelta()
        self.stem = conv_norm_relu(3, 24, (3, 5, 5), (1, 2, 2))
        self.block1 = ResidualBlock3d(24, 32, (1, 2, 2))
        self.block2 = ResidualBlock3d(32, 48, (2, 2, 2))
        self.block3 = ResidualBlock3d(48, 64, (1, 1, 1))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(64, num_classes)

    def forward(self, video: Tensor) -> Tensor:  # [B, 3, T, H, W] -> [B, K]
        features = self.block3(self.block2(self.block1(self.stem(self.delta(video)))))
        return self.head(self.pool(features).flatten(1))


class EmbeddedEvaluator(nn.Module):
    """3D CNN with GroupNorm and global max pooling: 8x32^2 -> 24x8x16^2 -> 48x8x8^2 -> 64x4x4^2 -> 96x4x4^2
    -> max -> linear. Trained with pixel noise (see ``train.py``), so noise alone does not sway it.

    (Variants with average pooling and a 3x3 or 1x3x3 stem could not tell the rotation directions apart:
    held-out accuracy 9-24% on "rotating clockwise".)"""

    def __init__(self, num_classes: int = len(CLASS_NAMES)):
        super().__init__()
        self.delta = TemporalDelta()
        self.stem = conv_norm_relu(3, 24, (3, 5, 5), (1, 2, 2), group_norm)
        self.block1 = conv_norm_relu(24, 48, (3, 3, 3), (1, 2, 2), group_norm)
        self.block2 = conv_norm_relu(48, 64, (3, 3, 3), (2, 2, 2), group_norm)
        self.block3 = conv_norm_relu(64, 96, (3, 3, 3), (1, 1, 1), group_norm)
        self.head = nn.Linear(96, num_classes)

    def forward(self, video: Tensor) -> Tensor:  # [B, 3, T, H, W] -> [B, K]
        features = self.block3(self.block2(self.block1(self.stem(self.delta(video)))))
        return self.head(features.amax(dim=(2, 3, 4)))
