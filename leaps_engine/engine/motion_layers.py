"""x* as motion layers: the objects of one still frame, each moved as a whole by an optimised similarity motion.

A layered representation of a moving image (Wang and Adelson, "Representing moving images with layers",
IEEE TIP 1994) with one layer per object of the stimulus's first frame:

1. :func:`find_layers` finds the objects: pixels whose colour differs from a local median background
   (``cv2.medianBlur``) by more than :data:`LAYER_CONTRAST` in some channel, split into 8-connected
   regions (``cv2.connectedComponentsWithStats``); each region of at least :func:`min_layer_area`
   pixels, with the background it encloses, is a layer (the :data:`MAX_LAYERS` largest), with a soft
   edge one pixel wide. An object wider than about the median window (a third of the frame) can be found
   in pieces, each then moving on its own.
2. :func:`fill_layers` paints the background where the layers were (``cv2.inpaint``, Telea 2004), so
   that a layer that moves away leaves background behind, not a copy of itself.
3. :class:`LayerParameterization` moves each of the ``moving_layers`` largest layers by a similarity
   transform per frame (translation, rotation about the layer's centre, scale), keeps the others where
   they are, and paints the layers, largest on top, over the filled background. The parameters are each
   frame's velocities, so a pose is the sum of the steps before it.
4. With ``motion_sparsity`` > 0, every velocity is shrunk toward zero after each step (soft thresholding,
   the proximal step of an L1 penalty as for a plain gradient step; Beck and Teboulle, "A fast iterative
   shrinkage-thresholding algorithm", SIAM J. Imaging Sci. 2009): a motion survives only where the
   objective keeps asking for it, so that spin, scale or drift that no term needs fades.

Made for scenes of flat objects on a smoother background, such as the embedded domain's; on a natural
image the regions follow colour edges, not objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from leaps_engine._features import require
from leaps_engine.config import MAX_LAYERS
from leaps_engine.engine.adapters.base import InputSpec
from leaps_engine.errors import LeapsError

LAYER_CONTRAST = 0.18  # pixels in [0, 1]: an object's colour differs from the local background by more
LAYER_MIN_SHARE = 1 / 256  # of the frame's pixels (4 at 32 x 32): smaller regions stay in the background
BACKGROUND_SIDE = 48  # the median background is estimated on frames scaled to at most this many pixels a side
LAYER_INIT_SCALE = 0.1  # standard deviation of the starting velocities (pixels, radians, log-scale per frame)
MAX_SPEED = 0.15  # a layer's fastest translation, as a share of the frame's short side per frame
MAX_SPIN = 0.8  # radians per frame (about 46 degrees)
MAX_GROWTH = 0.15  # log-scale per frame (x1.16)


def check_still_frames(name: str, seeds: Sequence[int], size: tuple[int, int, int], frames: torch.Tensor) -> None:
    """Raise :class:`LeapsError` unless a parameterisation that moves one still frame per video (``name``)
    has at least 2 frames in ``size`` ``(T, H, W)`` and ``frames`` ``[len(seeds), 3, H, W]``."""
    length, height, width = size
    if length < 2:
        raise LeapsError(f"the {name} parameterisation moves a frame over time and needs at least 2 frames, "
                         f"got {length}")
    if tuple(frames.shape) != (len(seeds), 3, height, width):
        raise LeapsError(f"the {name} parameterisation needs one still frame [3, {height}, {width}] per video, "
                         f"got {tuple(frames.shape)} for {len(seeds)} videos")


def seeded_velocities(seeds: Sequence[int], shape: tuple[int, ...], scale: float,
                      device: torch.device) -> torch.Tensor:
    """Starting velocities ``[len(seeds), *shape]``, a leaf that requires grad: video ``b``'s drawn from
    N(0, scale^2) on the CPU with ``seeds[b]``, so a video starts the same alone or in any batch."""
    velocities = [scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed)) for seed in seeds]
    return torch.stack(velocities).to(device).requires_grad_(True)


def min_layer_area(height: int, width: int) -> int:
    """The fewest pixels a layer has in a ``height x width`` frame: :data:`LAYER_MIN_SHARE` of them, at least 1."""
    return max(1, round(LAYER_MIN_SHARE * height * width))


def find_layers(frames: torch.Tensor) -> torch.Tensor:
    """The objects of each frame as layer alphas: ``[B, 3, H, W]`` in [0, 1] -> ``[B, MAX_LAYERS, H, W]`` in
    [0, 1], largest first, unused layers all zero (see the module docstring for the method).

    An object's region, with any background it encloses, has alpha 1 (an object whose middle matches the
    median background is found as its outline and filled). The pixels around it that no other object
    holds, its soft edge, have their contrast over the region's mean contrast as alpha: for a one-coloured
    object, the share of the pixel it covers (the linear mixing model).
    """
    cv2 = require("cv2", "the layers parameterisation")
    batch, _, height, width = frames.shape
    alphas = torch.zeros(batch, MAX_LAYERS, height, width)
    for index, frame in enumerate(_as_uint8_images(frames)):
        contrast = np.abs(frame.astype(np.int16) - _median_background(frame, cv2)).max(axis=-1)
        objects = (contrast > LAYER_CONTRAST * 255).astype(np.uint8)
        _, regions, stats, _ = cv2.connectedComponentsWithStats(objects, connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA]
        kept_labels = [label + 1 for label in np.argsort(-areas, kind="stable")[:MAX_LAYERS]
                       if areas[label] >= min_layer_area(height, width)]
        insides = [_filled(regions == label, cv2) for label in kept_labels]
        held = np.any(insides, axis=0) if insides else np.zeros((height, width), bool)
        for layer, (label, inside) in enumerate(zip(kept_labels, insides, strict=True)):
            edge = cv2.dilate(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~held
            held |= edge  # a pixel between two objects is the larger one's edge only
            share = np.clip(contrast / contrast[regions == label].mean(), 0.0, 1.0)
            alphas[index, layer] = torch.from_numpy(np.where(edge, share, inside).astype(np.float32))
    return alphas


def _filled(region: np.ndarray, cv2) -> np.ndarray:
    """``region`` ``[H, W]`` (bool) with the background it encloses: every pixel not 4-connected to the
    frame's surroundings."""
    outside = np.pad(~region, 1, constant_values=True).astype(np.uint8)
    _, parts = cv2.connectedComponents(outside, connectivity=4)
    return (parts != parts[0, 0])[1:-1, 1:-1]


def _as_uint8_images(frames: torch.Tensor) -> np.ndarray:
    """``[B, 3, H, W]`` in [0, 1] -> ``[B, H, W, 3]`` uint8, as OpenCV takes images."""
    pixels = (frames.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return np.ascontiguousarray(pixels.permute(0, 2, 3, 1).numpy())


def _median_background(frame: np.ndarray, cv2) -> np.ndarray:
    """A frame's background ``[H, W, 3]`` (int16): its median over a square window (``cv2.medianBlur``, edge
    pixels repeated) a third of the short side wide and at least 7 pixels, on the frame shrunk to at most
    :data:`BACKGROUND_SIDE` pixels a side, then scaled back up."""
    height, width = frame.shape[:2]
    shrink = min(1.0, BACKGROUND_SIDE / max(height, width))
    small = cv2.resize(frame, (max(1, round(width * shrink)), max(1, round(height * shrink))),
                       interpolation=cv2.INTER_AREA) if shrink < 1 else frame
    window = max(7, min(small.shape[:2]) // 3 | 1)
    background = cv2.medianBlur(small, window)
    if shrink < 1:
        background = cv2.resize(background, (width, height), interpolation=cv2.INTER_LINEAR)
    return background.astype(np.int16)


def fill_layers(frames: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """``frames`` ``[B, 3, H, W]`` in [0, 1] with the pixels under any of ``alphas`` ``[B, K, H, W]``
    replaced by inpainted background (``cv2.inpaint``, Telea's method, radius 3 pixels)."""
    cv2 = require("cv2", "the layers parameterisation")
    holes = alphas.amax(dim=1) > 0  # [B, H, W]
    filled = [cv2.inpaint(frame, hole.numpy().astype(np.uint8), 3, cv2.INPAINT_TELEA)
              for frame, hole in zip(_as_uint8_images(frames), holes, strict=True)]
    painted = torch.from_numpy(np.stack(filled)).permute(0, 3, 1, 2).float() / 255
    return torch.where(holes[:, None], painted, frames.float().cpu())


def _paint_over(layers: torch.Tensor, under: torch.Tensor) -> torch.Tensor:
    """Premultiplied ``layers`` ``[..., K, 4, H, W]`` painted in order over ``under`` ``[..., 3, H, W]``
    (Porter and Duff's "over")."""
    for layer in layers.unbind(-4):
        under = layer[..., :3, :, :] + (1 - layer[..., 3:, :, :]) * under
    return under


class LayerParameterization:
    """x* as the objects of one still frame, each moved as a whole: only their motion is free.

    The frame ``I`` (the first frame of the video's stimulus) is split into layers (:func:`find_layers`)
    over a background with the layers painted out (:func:`fill_layers`). At frame ``t`` layer ``k`` is
    moved by the similarity transform ``p -> c_k + d + s R(theta) (p - c_k)`` about its centre ``c_k``
    (translation ``d`` in pixels, ``theta`` in radians, clockwise on screen, scale ``s``), resampled with
    ``torch.nn.functional.grid_sample`` (bilinear, premultiplied alpha) and painted over the frame so far
    (Porter and Duff's "over"), smallest layer first. ``(d, theta, log s)`` is 0 at frame 0 and the sum of
    the velocities of frames 1..t: the parameters are velocities ``[B, T-1, moving_layers, 4]`` (``d_x``,
    ``d_y`` in pixels per frame, x right and y down; spin in radians per frame; growth in log-scale per
    frame), kept within :data:`MAX_SPEED`, :data:`MAX_SPIN` and :data:`MAX_GROWTH` by :meth:`project`.
    Only the ``moving_layers`` largest layers have velocities; the smaller ones stay still, so that the
    motion a model asks for is carried by the main objects and not spread over small clutter.
    A soft edge's colour is its pixel less the background's share (the linear mixing model), so frame 0
    is ``I`` again but at the few soft-edge pixels where that model does not fit (a two-coloured object,
    an inpainted background unlike the true one), whose colour is clipped to a valid one. Every pixel of
    x* is a blend of ``I`` and its background, in [0, 1].

    Args:
        seeds: one seed per video; video ``b`` starts from velocities N(0, init_scale^2) drawn on the CPU
            from ``seeds[b]``.
        size: ``(T, H, W)`` of x*; at least 2 frames.
        spec, device: the model's input spec and the device of the parameters.
        frames: the still frame of each video, pixels ``[B, 3, H, W]`` in [0, 1].
        init_scale: standard deviation of the starting velocities.
        moving_layers: how many of the largest layers move, 1 to :data:`MAX_LAYERS`.
        restarts: the videos' rows come in groups of this many restarts (:mod:`leaps_engine.engine.restarts`)
            that share one frame; it is split into layers once per group, and errors name the video.
        motion_sparsity: after each step, every velocity moves toward zero by this share of the step's
            learning rate, and stops at zero (:meth:`project`); 0 turns it off.

    Raises:
        LeapsError: fewer than 2 frames, frames that are not ``[B, 3, H, W]`` for ``B`` seeds,
            ``moving_layers`` outside 1 to :data:`MAX_LAYERS`, a negative (or NaN) ``motion_sparsity``, or a frame
            with no object to move (no region of :func:`min_layer_area` pixels differs from its background
            by :data:`LAYER_CONTRAST`).
    """

    def __init__(self, seeds: Sequence[int], size: tuple[int, int, int], spec: InputSpec, device: torch.device,
                 frames: torch.Tensor, init_scale: float = LAYER_INIT_SCALE, moving_layers: int = MAX_LAYERS,
                 restarts: int = 1, motion_sparsity: float = 0.0):
        check_still_frames("layers", seeds, size, frames)
        if not 1 <= moving_layers <= MAX_LAYERS:
            raise LeapsError(f"moving_layers must be in 1..{MAX_LAYERS}, got {moving_layers}")
        if not motion_sparsity >= 0:  # NaN too
            raise LeapsError(f"motion_sparsity must be >= 0, got {motion_sparsity}")
        length, height, width = size
        frames = frames[::restarts]  # one per video: its restarts share it, and are split into layers once
        alphas = find_layers(frames)  # [videos, K, H, W], largest first
        layer_counts = (alphas.flatten(2).amax(dim=-1) > 0).sum(dim=1).tolist()  # per video
        empty = [index for index, count in enumerate(layer_counts) if count == 0]
        if empty:
            raise LeapsError(f"the layers parameterisation found no object to move in the first frame of video "
                             f"{empty[0]}'s stimulus (no region of {min_layer_area(height, width)} pixels differs "
                             f"from its background by {LAYER_CONTRAST}); use --parameterization warp, fourier or "
                             "pixel")
        # Only the layers some video of the batch uses (a prefix: largest first) are moved and painted; an
        # empty layer would add exactly nothing.
        alphas = alphas[:, :max(layer_counts)]
        rows, columns = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
        area = alphas.sum(dim=(2, 3)).clamp_min(1.0)[..., None]
        centres = torch.stack([(alphas * columns).sum(dim=(2, 3)), (alphas * rows).sum(dim=(2, 3))], -1) / area
        # Each layer as premultiplied colour and alpha, one image per (video, layer), painted smallest first.
        # Under the linear mixing model (I = colour * alpha + background * (1 - alpha)), the colour a soft edge
        # adds is I minus the background's share: frame 0 is I again where that model fits.
        background = fill_layers(frames, alphas)  # [videos, 3, H, W]
        colour = frames.float().cpu()[:, None] - (1 - alphas[:, :, None]) * background[:, None]
        colour = torch.minimum(colour.clamp_min(0.0), alphas[:, :, None])  # a valid premultiplied colour
        layers = torch.cat([colour, alphas[:, :, None]], 2).flip(1)  # [videos, K, 4, H, W]
        # Each restart's row gets its video's layers.
        layers, background, centres = (value.repeat_interleave(restarts, dim=0).to(device)
                                       for value in (layers, background, centres))  # B rows
        # The layers that stay still are the smallest, painted before every moving one: they are painted
        # into the background once, and only the moving layers (M of them) are resampled.
        still_count = max(0, layers.shape[1] - moving_layers)
        self._background = _paint_over(layers[:, :still_count], background)  # [B, 3, H, W]
        moving = layers[:, still_count:]  # [B, M, 4, H, W]
        # Every frame of x* resamples every moving layer: the images, one per (video, frame, layer), made once.
        self._layer_images = moving[:, None].expand(-1, length, -1, -1, -1, -1).reshape(-1, 4, height, width)
        self._layer_count = moving.shape[1]
        self._centres = centres.flip(1)[:, still_count:]  # [B, M, 2] pixels (x, y)
        self._pixel_centres = torch.stack([columns, rows], -1).to(device)  # [H, W, 2] pixels (x, y)
        self._velocity = seeded_velocities(seeds, (length - 1, moving_layers, 4), init_scale, device)  # [B, T-1, M, 4]
        self._size = size
        self._spec = spec
        self._motion_sparsity = motion_sparsity

    def parameters(self) -> list[torch.Tensor]:
        """The velocities ``[B, T-1, moving_layers, 4]``: ``d_x``, ``d_y`` (pixels), spin (radians, clockwise),
        growth (log-scale), each per frame; index ``k`` of dim 2 moves the ``k``-th largest layer."""
        return [self._velocity]

    def video(self) -> torch.Tensor:
        """x* ``[B, 3, T, H, W]`` in the model's normalised space, differentiable in the velocities."""
        length, height, width = self._size
        velocity = self._velocity[:, :, :self._layer_count]  # the used layers'
        poses = torch.cat([torch.zeros_like(velocity[:, :1]), velocity], dim=1).cumsum(dim=1)
        poses = poses.flip(2)  # [B, T, M, 4], in painting order (smallest layer first)
        shift, angle, scale = poses[..., :2], poses[..., 2], poses[..., 3].exp()
        centre = self._centres[:, None]  # [B, 1, M, 2]
        # Where each output pixel q comes from: p = c + R(-theta) (q - c - d) / s.
        offset = self._pixel_centres - (centre + shift)[..., None, None, :]  # [B, T, M, H, W, 2]
        cos, sin, shrink = (value[..., None, None] for value in (angle.cos(), angle.sin(), 1 / scale))
        source_x = (cos * offset[..., 0] + sin * offset[..., 1]) * shrink + centre[..., 0, None, None]
        source_y = (cos * offset[..., 1] - sin * offset[..., 0]) * shrink + centre[..., 1, None, None]
        sample_at = torch.stack([source_x * (2 / width) - 1, source_y * (2 / height) - 1], -1)
        moved = nn.functional.grid_sample(self._layer_images, sample_at.reshape(-1, height, width, 2),
                                          mode="bilinear", padding_mode="zeros", align_corners=False)
        moved = moved.reshape(-1, length, self._layer_count, 4, height, width)
        video = _paint_over(moved, self._background[:, None].expand(-1, length, -1, -1, -1))  # [B, T, 3, H, W]
        return self._spec.normalize(video.transpose(1, 2))

    def project(self, lr: float) -> None:
        """Keep each layer's velocities within :data:`MAX_SPEED`, :data:`MAX_SPIN` and :data:`MAX_GROWTH`, then
        soft-threshold them by ``motion_sparsity * lr`` (``lr``: the learning rate of the step just taken):
        ``v <- sign(v) * max(|v| - motion_sparsity * lr, 0)``, the proximal step of the penalty
        ``motion_sparsity * sum |v|`` for a plain gradient step of size ``lr``, in every unit alike (pixels,
        radians, log-scale per frame). It is not rescaled by Adam's per-velocity step size: Adam's step on a
        velocity is about ``lr`` where the gradient's sign holds steady, less where it wavers, so a velocity
        the objective pushes less steadily than that share decays to zero. A step that float16's loss
        scaler skips (inf or NaN gradients) is still followed by a shrink."""
        with torch.no_grad():
            fastest = MAX_SPEED * min(self._size[1:])
            speed = self._velocity[..., :2].norm(dim=-1, keepdim=True)
            self._velocity[..., :2] *= (fastest / speed.clamp_min(1e-12)).clamp(max=1.0)
            self._velocity[..., 2].clamp_(-MAX_SPIN, MAX_SPIN)
            self._velocity[..., 3].clamp_(-MAX_GROWTH, MAX_GROWTH)
            if self._motion_sparsity > 0:
                self._velocity.copy_(nn.functional.softshrink(self._velocity, self._motion_sparsity * lr))
