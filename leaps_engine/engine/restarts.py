"""Random restarts: each video optimised from several starting points at once, the best one kept.

The loss of a synthesis run is not convex in x*, and where the optimisation ends depends on where it
starts: from different starting points the same objective reaches the target class every time but moves the
actor differently. With ``restarts`` R > 1 every video is optimised from R starting points in one batch,
its rows ``(video, restart)`` video-major, each with its own seed, Adam state and loss (the rows never mix:
BatchNorm statistics are per video; ``bn_stats="batch"``, which pools them, allows one restart only), and the
restart with the lowest total loss at the last step is kept (:func:`best_rows`).

Restart 0 starts from the video's own seed, so ``restarts=1`` is the single run; restart ``k > 0`` from
:func:`restart_seed`.
"""

from __future__ import annotations

import numpy as np
import torch


def restart_seed(seed: int, restart: int) -> int:
    """The seed of restart ``restart`` of the video seeded ``seed`` (any integer, as ``torch.manual_seed``
    takes): ``seed`` itself for restart 0, else a 32-bit seed drawn from ``numpy.random.SeedSequence`` of
    ``(seed mod 2^64, restart)``, a different stream for every pair."""
    if restart == 0:
        return seed
    return int(np.random.SeedSequence((seed % 2**64, restart)).generate_state(1)[0])


def best_rows(total_loss: torch.Tensor, restarts: int) -> torch.Tensor:
    """Per video, the batch row of its restart with the lowest loss: ``total_loss`` ``[videos * restarts]``
    (video-major; the whole objective of each row) -> row indices ``[videos]``."""
    per_video = total_loss.detach().reshape(-1, restarts)
    return per_video.argmin(dim=1) + torch.arange(per_video.shape[0], device=per_video.device) * restarts
