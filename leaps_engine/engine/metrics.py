"""Evaluation metrics for synthesized videos: accuracy, Inception Score and consecutive-frame similarity.

Pure functions on tensors; the ``leaps-engine evaluate`` job (:mod:`leaps_engine.evaluation`) feeds them.

* :func:`topk_accuracy`, :func:`mean_target_probability`: how often a network recognises the target
  class. A target of ``-1`` means "this class does not exist for that network" and always counts as wrong.
* :func:`inception_score`: ``exp(E_x KL(p(y|x) || p(y)))`` per split, as in Salimans et al. (2016); high
  when each video is confidently one class and the classes are diverse.
* :func:`consecutive_frame_psnr`, :func:`consecutive_frame_ssim`: mean PSNR / SSIM between frames ``t``
  and ``t + 1`` (paper Fig. 7): high values mean smooth, temporally coherent motion.
* :func:`frame_pixel_std`: the spread of each frame's pixels (a grey or blurred video has little).
* :func:`high_frequency_share`: the share of spatial spectral energy above half the Nyquist frequency,
  what per-pixel noise is made of (``evaluate`` reports synthesized videos' share over their stimuli's).
"""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

LOG_EPS = 1e-12  # guards log(0) in the Inception Score
HIGH_FREQUENCY_CUTOFF = 0.25  # cycles per pixel: half the Nyquist frequency (0.5)
MAX_PSNR_DB = 100.0  # identical frames have infinite PSNR; such pairs count as this value
SSIM_KERNEL = 11  # torchmetrics' default Gaussian window (sigma 1.5)
SSIM_SIGMA = 1.5


def topk_accuracy(probs: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    """Percentage (0-100) of rows whose target is among the ``k`` most probable classes.

    Args:
        probs: ``[N, K]`` class probabilities (or logits: only their order matters).
        targets: ``[N]`` class indices; ``-1`` counts as wrong.
        k: how many top classes count (capped at ``K``).

    Returns NaN for ``N == 0``.
    """
    if probs.shape[0] == 0:
        return math.nan
    top = probs.topk(min(k, probs.shape[1]), dim=1).indices  # [N, k]
    targets = targets.to(top.device).long()
    hits = (top == targets[:, None]).any(dim=1) & (targets >= 0)
    return 100.0 * hits.double().mean().item()


def mean_target_probability(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean over rows of ``probs[i, targets[i]]`` (``[N, K]``, ``[N]``); a ``-1`` target contributes 0."""
    if probs.shape[0] == 0:
        return math.nan
    targets = targets.to(probs.device).long()
    picked = probs.gather(1, targets.clamp(min=0)[:, None])[:, 0]  # [N]
    return torch.where(targets >= 0, picked, torch.zeros_like(picked)).double().mean().item()


def inception_score(probs: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score ``(mean, std)`` of ``probs [N, K]`` (rows are p(y|x), each summing to 1).

    The rows are cut into ``min(splits, N // K)`` (at least one) consecutive chunks of nearly equal size
    (``torch.tensor_split``), so that every chunk has at least K rows and could reach the maximum, K;
    each chunk scores ``exp(mean_i KL(p(y|x_i) || p_chunk(y)))`` with ``p_chunk`` the chunk's mean row. The
    std is the population std over chunks (``np.std``, as the original IS code), 0 for one chunk. Logs take
    ``p + 1e-12``. ``N == 0`` gives ``(nan, nan)``.
    """
    if probs.shape[0] == 0:
        return math.nan, math.nan
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    probs = probs.double()
    scores = []
    chunks = max(1, min(splits, probs.shape[0] // probs.shape[1]))
    for chunk in torch.tensor_split(probs, chunks):  # each [n, K]
        marginal = chunk.mean(dim=0, keepdim=True)  # [1, K]
        kl = (chunk * ((chunk + LOG_EPS).log() - (marginal + LOG_EPS).log())).sum(dim=1)  # [n]
        scores.append(kl.mean().exp())
    scores = torch.stack(scores)
    return scores.mean().item(), scores.std(correction=0).item()


def _frame_pairs(videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, 3, T, H, W]`` -> frames ``t`` and ``t + 1`` as two ``[N * (T - 1), 3, H, W]`` batches."""
    if videos.dim() != 5:
        raise ValueError(f"expected videos [N, 3, T, H, W], got shape {tuple(videos.shape)}")
    videos = videos.float()

    def frames(clip: torch.Tensor) -> torch.Tensor:
        return clip.transpose(1, 2).flatten(0, 1)

    return frames(videos[:, :, :-1]), frames(videos[:, :, 1:])


def consecutive_frame_psnr(videos: torch.Tensor) -> torch.Tensor:
    """Mean PSNR (dB) between consecutive frames of each video: ``[N, 3, T, H, W]`` in [0, 1] -> ``[N]``.

    Each of the ``T - 1`` pairs is scored on its own (data range 1); an identical pair would score
    infinity and is clamped to :data:`MAX_PSNR_DB` (100 dB) so that one still frame cannot make the mean
    infinite. ``T < 2`` gives NaN.
    """
    count, frames = videos.shape[0], videos.shape[2]
    if frames < 2:
        return torch.full((count,), math.nan)
    earlier, later = _frame_pairs(videos)
    psnr = peak_signal_noise_ratio(earlier, later, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return psnr.clamp(max=MAX_PSNR_DB).view(count, frames - 1).mean(dim=1).cpu()


def ssim_window(height: int, width: int) -> tuple[int, float]:
    """Gaussian SSIM window ``(kernel_size, sigma)`` for ``height x width`` frames.

    The default 11-pixel window (sigma 1.5) unless a frame is smaller: then the largest odd size
    ``<= min(height, width)``. torchmetrics derives the Gaussian window's size from sigma
    (``2 * int(3.5 * sigma + 0.5) + 1``), so a smaller window means a smaller sigma: ``(size - 1) / 7``,
    or 0.1 for a one-pixel window.
    """
    side = min(height, width)
    if side >= SSIM_KERNEL:
        return SSIM_KERNEL, SSIM_SIGMA
    size = side if side % 2 else side - 1
    radius = (size - 1) // 2
    return size, (radius / 3.5 if radius else 0.1)


def consecutive_frame_ssim(videos: torch.Tensor) -> torch.Tensor:
    """Mean SSIM between consecutive frames of each video: ``[N, 3, T, H, W]`` in [0, 1] -> ``[N]``.

    Gaussian window of :func:`ssim_window` (11 pixels, sigma 1.5, unless the frames are smaller), data
    range 1. ``T < 2`` gives NaN.
    """
    count, frames = videos.shape[0], videos.shape[2]
    if frames < 2:
        return torch.full((count,), math.nan)
    earlier, later = _frame_pairs(videos)
    kernel_size, sigma = ssim_window(*videos.shape[-2:])
    ssim = structural_similarity_index_measure(
        earlier, later, kernel_size=kernel_size, sigma=sigma, data_range=1.0, reduction="none"
    )
    return ssim.view(count, frames - 1).mean(dim=1).cpu()


def frame_pixel_std(videos: torch.Tensor) -> torch.Tensor:
    """Mean over the frames of the standard deviation of each frame's pixels (all channels together):
    ``[N, 3, T, H, W]`` in [0, 1] -> ``[N]`` (pixel units)."""
    if videos.dim() != 5:
        raise ValueError(f"expected videos [N, 3, T, H, W], got shape {tuple(videos.shape)}")
    frames = videos.float().transpose(1, 2).flatten(2)  # [N, T, 3 * H * W]
    return frames.std(dim=2).mean(dim=1).cpu()


def high_frequency_share(videos: torch.Tensor) -> torch.Tensor:
    """Share in [0, 1] of each video's spatial spectral energy above half the Nyquist frequency:
    ``[N, 3, T, H, W]`` in [0, 1] -> ``[N]``.

    Computed on the grey frames (mean of the channels) with each frame's mean removed, from the 2-D FFT
    over (H, W); a frequency counts as high when its radial frequency ``sqrt(f_h^2 + f_w^2)`` exceeds
    :data:`HIGH_FREQUENCY_CUTOFF` cycles per pixel. Energies are summed over the frames before the share
    is taken. A video with no spatial variation gives NaN.
    """
    if videos.dim() != 5:
        raise ValueError(f"expected videos [N, 3, T, H, W], got shape {tuple(videos.shape)}")
    grey = videos.float().mean(dim=1)  # [N, T, H, W]
    grey = grey - grey.mean(dim=(2, 3), keepdim=True)
    energy = torch.fft.rfft2(grey).abs().square()  # [N, T, H, W // 2 + 1]
    f_h = torch.fft.fftfreq(grey.shape[2], device=grey.device)[:, None]
    f_w = torch.fft.rfftfreq(grey.shape[3], device=grey.device)[None, :]
    weight = torch.ones_like(f_w).expand(len(f_h), -1).clone()
    if grey.shape[3] % 2 == 0:
        weight[:, 1:-1] = 2  # rfft keeps one half of the spectrum: the other half mirrors these columns
    else:
        weight[:, 1:] = 2
    high = (torch.sqrt(f_h**2 + f_w**2) > HIGH_FREQUENCY_CUTOFF).float()
    total = (energy * weight).sum(dim=(1, 2, 3))
    return ((energy * weight * high).sum(dim=(1, 2, 3)) / total).cpu()
