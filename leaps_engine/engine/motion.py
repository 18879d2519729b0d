"""The motion figure: how closely a synthesized video's dominant motion follows its stimulus's.

Dense optical flow between consecutive frames comes from OpenCV's Farneback method
(``cv2.calcOpticalFlowFarneback``, Farneback 2003; classical, no network), computed on each colour
channel (a two-coloured actor can be invisible in grey) on frames upscaled to about 128 pixels, and
averaged over the channels. Per frame pair, the pixels that move (flow above
:data:`MOVING_PIXELS_PER_FRAME`) are split into connected regions and the regions of at least
:data:`KEPT_REGION_SHARE` of the largest one's area are kept (the actor, or both actors of a pair; a
smaller drifting object is dropped). On them a similarity motion is fitted by weighted least squares
about their flow-weighted centre: translation ``(t_x, t_y)``, divergence and curl, the last two times
the regions' radius of gyration so that all four are in pixels per frame.

A clip's **motion signature** (:func:`motion_signature`, 6 numbers, pixels per frame): the mean
translation ``t_x``, ``t_y`` (x right, y down), the mean divergence (growing, separating: positive), the
mean curl (clockwise on screen: positive), the change of vertical velocity from the first to the second
half of the clip (a bounce: negative), and the mean turning of the translation (the sine of the angle
between consecutive translations times their speed: circling). The **motion similarity** of a video and
its stimulus is the cosine of their signatures (:func:`motion_similarity`): 1 for the same dominant
motion, about 0 for unrelated ones, -1 for the opposite direction.
"""

from __future__ import annotations

import numpy as np
import torch

from leaps_engine._features import require

MOVING_PIXELS_PER_FRAME = 0.1  # flow below this is background
KEPT_REGION_SHARE = 0.7  # moving regions at least this share of the largest one's area are fitted
FLOW_SIDE = 128  # frames are upscaled (bicubic) to about this many pixels on their short side
FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 9, "iterations": 3, "poly_n": 5, "poly_sigma": 1.1,
             "flags": 0}  # cv2.calcOpticalFlowFarneback's parameters
SIGNATURE = ("t_x", "t_y", "divergence", "curl", "vertical_change", "turning")


def optical_flow(video: torch.Tensor) -> np.ndarray:
    """Flow from each frame to the next, averaged over the colour channels: ``[3, T, H, W]`` in [0, 1] ->
    ``[T - 1, H', W', 2]`` (x, y) in pixels of the original frame per frame, on the upscaled grid ``H' x W'``."""
    cv2 = require("cv2", "the motion figure")
    if video.dim() != 4 or video.shape[0] != 3 or video.shape[1] < 2:
        raise ValueError(f"expected a video [3, T>=2, H, W], got shape {tuple(video.shape)}")
    upscale = max(1, round(FLOW_SIDE / min(video.shape[-2:])))
    frames = (video.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    flows = []
    for channel in frames:
        big = [cv2.resize(frame, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC) for frame in channel]
        pairs = zip(big[:-1], big[1:], strict=True)
        flows.append([cv2.calcOpticalFlowFarneback(a, b, None, **FARNEBACK) for a, b in pairs])
    return np.mean(np.asarray(flows), axis=0) / upscale  # [T - 1, H', W', 2]


def similarity_motion(flow: np.ndarray, upscale: float) -> np.ndarray:
    """``(t_x, t_y, divergence * r, curl * r)`` in pixels per frame of one flow field ``[H', W', 2]``
    sampled ``upscale`` times finer than the frame; zeros where nothing moves."""
    cv2 = require("cv2", "the motion figure")
    speed = np.linalg.norm(flow, axis=-1)
    moving = (speed > MOVING_PIXELS_PER_FRAME).astype(np.uint8)
    if not moving.any():
        return np.zeros(4)
    _, regions, stats, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    kept = np.isin(regions, 1 + np.flatnonzero(areas >= KEPT_REGION_SHARE * areas.max()))
    weight = speed * kept
    weight = weight / weight.sum()
    ys, xs = np.mgrid[0 : flow.shape[0], 0 : flow.shape[1]] / upscale
    dx, dy = xs - (weight * xs).sum(), ys - (weight * ys).sum()
    translation = (weight[..., None] * flow).sum(axis=(0, 1))
    fx, fy = flow[..., 0] - translation[0], flow[..., 1] - translation[1]
    spread = (weight * (dx**2 + dy**2)).sum() + 1e-9  # squared radius of gyration, pixels^2
    divergence = (weight * (dx * fx + dy * fy)).sum() / spread
    curl = (weight * (dx * fy - dy * fx)).sum() / spread
    return np.array([*translation, divergence * np.sqrt(spread), curl * np.sqrt(spread)])


def motion_signature(video: torch.Tensor) -> np.ndarray:
    """The 6 numbers of :data:`SIGNATURE` (pixels per frame) for one video ``[3, T, H, W]`` in [0, 1],
    ``T >= 2`` (the vertical change and turning need ``T >= 3`` and are 0 below)."""
    flows = optical_flow(video)
    upscale = flows.shape[1] / video.shape[-2]
    steps = np.stack([similarity_motion(flow, upscale) for flow in flows])  # [T - 1, 4]
    translation = steps[:, :2]
    half = len(steps) // 2
    vertical_change = translation[-half:, 1].mean() - translation[:half, 1].mean() if half else 0.0
    speed = np.linalg.norm(translation, axis=1)
    cross = translation[:-1, 0] * translation[1:, 1] - translation[:-1, 1] * translation[1:, 0]
    turning = np.mean(np.abs(cross) / np.sqrt(speed[:-1] * speed[1:] + 1e-9)) if len(steps) > 1 else 0.0
    return np.array([*steps.mean(axis=0), vertical_change, turning])


def motion_similarity(videos: torch.Tensor, stimuli: torch.Tensor) -> torch.Tensor:
    """Cosine of the motion signatures of each video and its stimulus: ``[N, 3, T, H, W]`` twice (in [0, 1];
    sizes may differ between the two) -> ``[N]`` in [-1, 1]; NaN where either does not move."""
    pairs = zip(videos, stimuli, strict=True)
    return torch.tensor([signature_similarity(motion_signature(a), motion_signature(b)) for a, b in pairs])


def signature_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two motion signatures; NaN where either is all zero (nothing moves)."""
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norms) if norms > 0 else float("nan")
