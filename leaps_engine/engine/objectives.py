"""The terms of the LEAPS objective (paper Eq. 1-4), each returning one value per video, ``[B]``.

``L = L_CE + L_prim + r * (R_coh + R_feat)``:

* :func:`cross_entropy`: CE on logits.
* :func:`priming_loss`: ``(1/L) sum_l lambda_l * d(mu(z^l(x*)), mu(z^l(v)))`` over the priming taps, with
  ``lambda_l`` falling linearly from ``lambda_first`` to ``lambda_last`` (:func:`priming_weights`).
* :func:`temporal_coherence`: on the last tap only, over all frame pairs t1 < t2: consecutive pairs add
  their distance, the others ``max(0, margin - distance)``; averaged over the pairs (Eq. 2).
* :func:`feature_statistics_loss`: the verifier's BatchNorm-statistics distance summed over its
  BatchNorm layers (Eq. 3).

The baselines of Table 1 add pixel priors: :func:`total_variation` and :func:`l2_prior`.
:func:`compose` sums the terms of a method into the total (Eq. 4 for LEAPS): the one place that does,
used by the lean step and by the reference step of ``bench``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from leaps_engine.kernels.registry import EAGER_KERNELS, LossKernels

LOSS_TERMS = ("total", "ce", "priming", "coherence", "feature", "prior")


def compose(
    method: str, r: float, ce: torch.Tensor, *, priming: torch.Tensor | None = None,
    coherence: torch.Tensor | None = None, feature: torch.Tensor | None = None, prior: torch.Tensor | None = None,
    target_logit: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Every term of :data:`LOSS_TERMS`, ``[B]`` each, with the total the method optimises; a term left out
    (``None``) is 0.

    * ``leaps``: ``total = CE + L_prim + r * (R_coh + R_feat)`` (Eq. 4);
    * ``deepdream``: ``total = CE + prior`` (Table 1's 3D DeepDream: TV and L2 pixel priors);
    * ``am``: ``total = -target_logit + prior`` (activation maximisation with L2 decay).
    """
    zeros = torch.zeros_like(ce)
    terms = {"ce": ce, "priming": zeros if priming is None else priming,
             "coherence": zeros if coherence is None else coherence,
             "feature": zeros if feature is None else feature, "prior": zeros if prior is None else prior}
    if method == "leaps":
        total = ce + terms["priming"] + r * (terms["coherence"] + terms["feature"])
    elif method == "deepdream":
        total = ce + terms["prior"]
    else:  # "am"
        total = -target_logit + terms["prior"]
    return {"total": total, **terms}


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy ``[B]`` of logits ``[B, K]`` against class indices ``[B]``."""
    return nn.functional.cross_entropy(logits.float(), targets, reduction="none")


def priming_weights(num_taps: int, lambda_first: float, lambda_last: float) -> list[float]:
    """``lambda_l`` for taps ``l = 1..L``, linear from ``lambda_first`` to ``lambda_last`` (Supp. S2)."""
    if num_taps == 1:
        return [lambda_first]
    step = (lambda_last - lambda_first) / (num_taps - 1)
    return [lambda_first + step * index for index in range(num_taps)]


def priming_tap_count(num_taps: int, fraction: float) -> int:
    """How many of the first taps prime: ``floor(fraction * L)``, at least one (Supp. S4, Table S2)."""
    return max(1, math.floor(fraction * num_taps + 1e-9))


def priming_loss(
    taps: Sequence[torch.Tensor],
    stimulus_means: Sequence[torch.Tensor],
    weights: Sequence[float],
    distance: str = "jvs",
    kernels: LossKernels | None = None,
) -> torch.Tensor:
    """Weighted mean over taps of the priming distance, ``[B]``.

    Args:
        taps: activations of the synthesized videos at the priming taps, each ``[B, C, T', N]``.
        stimulus_means: the stimulus embeddings at the same taps, each ``[B, C]``.
        weights: ``lambda_l`` per tap.
        distance: ``jvs``, ``cos``, ``l1`` or ``l2`` (see :mod:`leaps_engine.kernels.priming`).
        kernels: the loss implementations (default: the eager reference).
    """
    kernels = kernels or EAGER_KERNELS
    total = taps[0].new_zeros(taps[0].shape[0], dtype=torch.float32)
    for tap, target, weight in zip(taps, stimulus_means, weights, strict=True):
        total = total + kernels.tap_priming(tap, target, weight, distance)
    return total / len(taps)


def total_variation(video: torch.Tensor) -> torch.Tensor:
    """Total variation ``[B]`` of ``[B, 3, T, H, W]``: the mean squared difference of neighbours along t,
    h and w, summed over the three axes (DeepDream's smoothness prior, extended to time)."""
    x = video.float()
    return sum((x.diff(dim=axis) ** 2).flatten(1).mean(1) for axis in (2, 3, 4))


def l2_prior(video: torch.Tensor) -> torch.Tensor:
    """Mean squared value ``[B]`` of each video (an L2 decay on the input)."""
    return video.float().pow(2).flatten(1).mean(1)


def coherence_pair_count(frames: int) -> int:
    """Number of frame pairs t1 < t2 that :func:`temporal_coherence` averages over."""
    return frames * (frames - 1) // 2


def temporal_coherence(tap: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Temporal coherence ``[B]`` of the last tap ``[B, C, T', N]`` (Eq. 2).

    The distance of frames t1, t2 is the mean absolute difference of their slices ``[C, N]``. Consecutive
    pairs add it (pull together); other pairs add ``max(0, margin - distance)`` (push apart). The sum is
    divided by the number of pairs. With ``T' < 2`` there is no pair and the term is 0.
    """
    batch, channels, frames, positions = tap.shape
    if frames < 2:
        return tap.new_zeros(batch, dtype=torch.float32)
    per_frame = tap.float().permute(0, 2, 1, 3).reshape(batch, frames, channels * positions)  # [B, T', C*N]
    distance = torch.cdist(per_frame, per_frame, p=1) / (channels * positions)  # [B, T', T']
    first, second = torch.triu_indices(frames, frames, offset=1, device=tap.device)
    pair_distance = distance[:, first, second]  # [B, pairs]
    consecutive = second - first == 1
    pair_loss = torch.where(consecutive, pair_distance, (margin - pair_distance).clamp(min=0.0))
    return pair_loss.mean(dim=1)


def feature_statistics_loss(
    bn_inputs: Sequence[tuple[nn.Module, torch.Tensor]], per_video: bool = True, kernels: LossKernels | None = None
) -> torch.Tensor:
    """Sum over the verifier's BatchNorm layers of the statistics distance, ``[B]`` (Eq. 3).

    Args:
        bn_inputs: ``(BatchNorm3d module, its input [B, C, T, H, W])`` for every BatchNorm call.
        per_video: statistics per video (default) or over the whole batch (DeepInversion).
        kernels: the loss implementations (default: the eager reference).
    """
    kernels = kernels or EAGER_KERNELS
    total = None
    for module, activation in bn_inputs:
        term = kernels.bn_statistics(activation, module.running_mean, module.running_var, per_video)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("the verifier ran no BatchNorm layer")
    return total
