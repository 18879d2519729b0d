"""Priming distance between the mean activation of a tap and the stimulus's (paper Eq. 1).

For a tap ``z`` of shape ``[B, C, T, N]`` (channels, frames, spatial positions) the mean embedding is
``mu = z.mean((2, 3))``, ``[B, C]``. Its distance to the stimulus embedding ``s`` (``[B, C]``) is one of:

* ``jvs``: ``1 - JVS(mu, s)`` with the Jaccard vector similarity of Fernando & Herath (CVPR 2021),
  ``JVS(a, b) = 2<a, b> / (|a|^2 + |b|^2 + eps)``. It is cos(angle) times the magnitude agreement
  ``2|a||b| / (|a|^2 + |b|^2)``, so it is 1 only when ``a == b``; the distance lies in [0, 2].
* ``cos``: ``1 - cos(mu, s)`` (angle only).
* ``l1``: mean absolute difference over channels, ``mean_c |a_c - b_c|``.
* ``l2``: root mean square difference over channels, ``sqrt(mean_c (a_c - b_c)^2)``.

The per-channel averages in ``l1``/``l2`` keep their scale independent of the channel count, like JVS.
These functions are the reference definitions: tests and the fused kernels are checked against them.
"""

import torch

PRIMING_DISTANCES = ("jvs", "cos", "l1", "l2")


def jvs_ref(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Jaccard vector similarity of ``[B, C]`` rows -> ``[B]``."""
    return 2.0 * (a * b).sum(-1) / (a.pow(2).sum(-1) + b.pow(2).sum(-1) + eps)


def priming_distance_ref(mean: torch.Tensor, target: torch.Tensor, distance: str = "jvs") -> torch.Tensor:
    """Distance ``[B]`` between embeddings ``mean`` and ``target`` (both ``[B, C]``)."""
    if distance == "jvs":
        return 1.0 - jvs_ref(mean, target)
    if distance == "cos":
        return 1.0 - torch.nn.functional.cosine_similarity(mean, target, dim=-1, eps=1e-8)
    if distance == "l1":
        return (mean - target).abs().mean(-1)
    if distance == "l2":
        return ((mean - target).pow(2).mean(-1) + 1e-12).sqrt()
    raise ValueError(f"unknown priming distance {distance!r}; expected one of {PRIMING_DISTANCES}")


def tap_priming_loss_ref(tap: torch.Tensor, target: torch.Tensor, distance: str = "jvs") -> torch.Tensor:
    """Distance ``[B]`` between the space-time mean of ``tap`` ``[B, C, T, N]`` and ``target`` ``[B, C]``."""
    return priming_distance_ref(tap.float().mean(dim=(2, 3)), target.float(), distance)
