"""Load a stimulus video as the clip that primes the model, at the size of the synthesized video.

A stimulus is a video file, a folder of frame images, a saved tensor (``.pt``/``.pth``) or an in-memory
tensor. :func:`load_stimulus` turns any of them into pixels ``[3, T, H, W]`` in [0, 1] at a given size
(T, H, W), by default the model's native clip (``spec.frames`` x ``spec.crop_size``^2). LEAPS gives the
stimulus v the size of the synthesized x* (paper Sec. 3.1), so synthesis passes x*'s size, and both then
go through the same adapter path (a fixed-size model resizes both to its input):

* Time: the clip covers the time span of the model's native clip, ``spec.frames * spec.sampling_rate``
  source frames, centred in the video (the usual single-clip evaluation protocol), and ``T`` frames are
  taken evenly over that span: frame ``i`` is source frame ``start + floor(i * span / T)``. At the
  native length that is every ``sampling_rate``-th frame; 8 frames for a 16-frame model take every other
  one of those. A source shorter than the span is looped (indices modulo its length, from frame 0), with
  a :class:`StimulusWarning`.
* Space: each frame is resized (bilinear, antialiased) so that it covers ``H`` x ``W`` (its shorter side,
  relative to the target, fits), then centre-cropped to ``H`` x ``W``.

Frames are taken as a player shows them: a video's display rotation (phones' "rotate 90") and sample
aspect ratio are applied, and so is an image's EXIF orientation. Only the sampled frames are converted
(videos are decoded twice: once to count, once to keep), and only the sampled images of a folder are
read. Every problem with the input raises :class:`LeapsError`.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.nn import functional as F

from leaps_engine._features import require
from leaps_engine._io import visible_entries
from leaps_engine.engine.adapters.base import InputSpec

if TYPE_CHECKING:
    import av
from leaps_engine.errors import LeapsError, one_line

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".gif", ".mov")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
TENSOR_EXTENSIONS = (".pt", ".pth")


class StimulusWarning(UserWarning):
    """The stimulus was usable but had to be adapted (e.g. looped because it was too short)."""


@dataclass(frozen=True)
class LoadedStimulus:
    """Pixels ``[3, T, H, W]`` in [0, 1] that :func:`load_stimulus` already sampled and fitted for ``spec``
    and ``size``: loading them again for the same spec and size returns them as they are (a stimulus is
    decoded once however many times a run asks for it)."""

    pixels: torch.Tensor
    spec: InputSpec
    size: tuple[int, int, int]


def load_stimulus(
    source: str | Path | torch.Tensor | LoadedStimulus, spec: InputSpec, size: tuple[int, int, int] | None = None
) -> torch.Tensor:
    """Pixels ``[3, T, H, W]`` float32 in [0, 1] (not normalised) for ``size = (T, H, W)``, by default the
    model's native clip; see the module docstring for the sampling and cropping rules."""
    frames_wanted, height, width = size or (spec.frames, spec.crop_size, spec.crop_size)
    if isinstance(source, LoadedStimulus):
        if (source.spec, source.size) != (spec, (frames_wanted, height, width)):
            raise ValueError("a LoadedStimulus is loaded again only for the spec and size it was loaded for")
        return source.pixels
    if min(frames_wanted, height, width) < 1:
        raise LeapsError(f"stimulus size must be three positive integers, got {frames_wanted}x{height}x{width}")
    clip = _ClipShape(spec, frames_wanted, height, width)
    if isinstance(source, torch.Tensor):
        name = "the stimulus tensor"
        return clip.fit(_sample(_tensor_frames(source, name), clip, name))
    path = Path(source)
    if not path.exists():
        raise LeapsError(f"stimulus not found: {path}")
    if path.is_dir():
        frames = _sample(_image_files(path), clip, str(path))
        return clip.fit([_read_image(file) for file in frames])
    suffix = path.suffix.lower()
    if suffix in TENSOR_EXTENSIONS:
        frames = _tensor_frames(_load_tensor_file(path), str(path))
        return clip.fit(_sample(frames, clip, str(path)))
    if suffix in VIDEO_EXTENSIONS:
        return clip.fit(_read_video_sample(path, clip))
    supported = ", ".join(VIDEO_EXTENSIONS + TENSOR_EXTENSIONS)
    kind = suffix or "(no extension)"
    raise LeapsError(f"unsupported stimulus type {kind!r}: {path} (expected a frame folder or {supported})")


def expand_stimulus(source: str | Path) -> list[Path]:
    """The stimuli a path stands for: a folder holding video or tensor files stands for each of them
    (multi-stimulus priming, Supp. S5); anything else (a file, a folder of frames) for itself."""
    path = Path(source)
    if not path.is_dir():
        return [path]
    entries = [p for p in visible_entries(path) if p.is_file()]
    clips = [p for p in entries if p.suffix.lower() in VIDEO_EXTENSIONS + TENSOR_EXTENSIONS]
    if clips:
        return clips
    if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in entries):
        return [path]
    raise LeapsError(f"folder {path} holds no video, tensor or frame image "
                     "(hidden files and operating-system files such as ._* and Thumbs.db are skipped)")


def read_video_frames(path: str | Path) -> tuple[torch.Tensor, float]:
    """All frames of a video as uint8 ``[T, H, W, 3]`` (RGB, at the first frame's size) and its fps (0.0 if unknown)."""
    path = Path(path)
    frames: list[np.ndarray] = []
    for frame in _decoded_frames(path):
        frames.append(_rgb(frame, (frames[0].shape[1], frames[0].shape[0]) if frames else None))
    if not frames:
        raise LeapsError(f"video has no decodable frames: {path}")
    return torch.from_numpy(np.stack(frames)), _video_fps(path)


class _ClipShape:
    """The clip to cut: ``frames`` frames over the time span of ``spec``'s native clip, ``height x width``."""

    def __init__(self, spec: InputSpec, frames: int, height: int, width: int):
        self.spec = spec
        self.frames, self.height, self.width = frames, height, width

    def fit(self, frames: Sequence[torch.Tensor]) -> torch.Tensor:
        """Frames (each ``[3, h, w]``, uint8 or float in [0, 1]) -> ``[3, T, H, W]`` float32, covering
        ``H x W`` after a resize, centre-cropped."""
        fitted = []
        for frame in frames:
            frame = frame.float() / 255 if frame.dtype == torch.uint8 else frame.float()
            height, width = frame.shape[1:]
            scale = max(self.height / height, self.width / width)
            new_size = (max(self.height, round(height * scale)), max(self.width, round(width * scale)))
            if new_size != (height, width):
                frame = F.interpolate(frame[None], size=new_size, mode="bilinear", antialias=True,
                                      align_corners=False)[0]
            top, left = (new_size[0] - self.height) // 2, (new_size[1] - self.width) // 2
            fitted.append(frame[:, top : top + self.height, left : left + self.width])
        return torch.stack(fitted, dim=1).clamp_(0, 1).contiguous()


def sample_indices(total: int, spec: InputSpec, frames: int | None = None) -> list[int]:
    """Indices of the ``frames`` (default ``spec.frames``) source frames to keep out of ``total`` >= 1:
    evenly over the centred span of ``spec``'s native clip, looped if the source is shorter."""
    frames = frames or spec.frames
    span = spec.frames * spec.sampling_rate
    start = max((total - span) // 2, 0)
    return [(start + (i * span) // frames) % total for i in range(frames)]


def _sample(items: Sequence, clip: _ClipShape, name: str) -> list:
    """The items at the clip's :func:`sample_indices`, warning if the source had to be looped."""
    _warn_if_short(len(items), clip.spec, name)
    return [items[i] for i in sample_indices(len(items), clip.spec, clip.frames)]


def _warn_if_short(total: int, spec: InputSpec, name: str) -> None:
    span = spec.frames * spec.sampling_rate
    if total < span:
        message = (
            f"{name} has {total} frames but {span} are needed (the model's clip: {spec.frames} frames x "
            f"sampling rate {spec.sampling_rate}); looping it"
        )
        warnings.warn(message, StimulusWarning, stacklevel=4)


# --- tensors -----------------------------------------------------------------------------------------------


def _load_tensor_file(path: Path) -> torch.Tensor:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError) as error:
        raise LeapsError(f"cannot load tensor file {path}: {one_line(error)}") from None
    if not isinstance(loaded, torch.Tensor):
        raise LeapsError(f"{path} holds a {type(loaded).__name__}, not a video tensor")
    return loaded


def _tensor_frames(video: torch.Tensor, name: str) -> list[torch.Tensor]:
    """Split a video tensor into frames ``[3, H, W]``.

    Accepted: ``[3, T, H, W]`` float in [0, 1] or uint8, and ``[T, H, W, 3]`` uint8 (if both dims are 3,
    the tensor is read as ``[3, T, H, W]``).
    """
    video = video.detach().cpu()
    shape = "x".join(str(d) for d in video.shape)
    is_float = video.is_floating_point()
    if not (is_float or video.dtype == torch.uint8):
        raise LeapsError(f"{name} has dtype {video.dtype}; expected float in [0, 1] or uint8")
    if video.dim() == 4 and video.shape[0] == 3:
        frames = video.unbind(1)
    elif video.dim() == 4 and video.shape[3] == 3 and not is_float:
        frames = video.permute(0, 3, 1, 2).unbind(0)
    else:
        expected = "[3, T, H, W] (float or uint8) or [T, H, W, 3] (uint8)"
        raise LeapsError(f"{name} has shape [{shape}] and dtype {video.dtype}; expected {expected}")
    if video.numel() == 0:
        raise LeapsError(f"{name} is empty (shape [{shape}])")
    if is_float and not bool(((video >= 0) & (video <= 1)).all()):
        raise LeapsError(f"{name} has values outside [0, 1]; float pixels must be in [0, 1]")
    return list(frames)


# --- image folders -----------------------------------------------------------------------------------------


def _natural_key(path: Path) -> list:
    """Sort key under which 'frame2' comes before 'frame10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _image_files(folder: Path) -> list[Path]:
    files = [p for p in visible_entries(folder) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise LeapsError(f"no frame images ({', '.join(IMAGE_EXTENSIONS)}) in folder {folder} "
                         "(hidden files and operating-system files such as ._* and Thumbs.db are skipped)")
    return sorted(files, key=_natural_key)


def _read_image(path: Path) -> torch.Tensor:
    """An image file as uint8 ``[3, H, W]`` RGB, turned as its EXIF orientation says (as viewers show it)."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise LeapsError(f"cannot read image {path}: {one_line(error)}") from None
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)


# --- video files -------------------------------------------------------------------------------------------


def _decoded_frames(path: Path) -> Iterator[tuple[av.VideoFrame, Fraction]]:
    """Decode the first video stream of ``path``: each frame with the stream's sample aspect ratio (1 where
    unset); PyAV errors become :class:`LeapsError`."""
    av = require("av", "reading video files")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise LeapsError(f"no video stream in {path}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            aspect = stream.sample_aspect_ratio
            aspect = Fraction(aspect) if aspect and aspect > 0 else Fraction(1)
            for frame in container.decode(stream):
                yield frame, aspect
    except av.error.FFmpegError as error:
        raise LeapsError(f"cannot decode video {path}: {one_line(error)}") from None


def _rgb(decoded: tuple[av.VideoFrame, Fraction], size: tuple[int, int] | None = None) -> np.ndarray:
    """A decoded frame as a player displays it: uint8 ``[H, W, 3]`` RGB with square pixels (the width scaled
    by the sample aspect ratio) turned by the stream's display matrix (a phone's "rotate 90"), at
    ``size`` = (width, height) of the displayed frame if given. Mirrored display matrices are not undone."""
    frame, aspect = decoded
    quarter_turns = round(frame.rotation / 90) % 4  # PyAV: degrees counterclockwise
    width, height = size if size else (max(1, round(frame.width * aspect)), frame.height)
    if size and quarter_turns % 2:  # size is the turned frame's
        width, height = height, width
    pixels = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
    return np.ascontiguousarray(np.rot90(pixels, k=quarter_turns)) if quarter_turns else pixels


def _video_fps(path: Path) -> float:
    with require("av", "reading video files").open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else 0.0


def _read_video_sample(path: Path, clip: _ClipShape) -> list[torch.Tensor]:
    """The sampled frames of a video, each uint8 ``[3, H, W]``."""
    total = sum(1 for _ in _decoded_frames(path))
    if total == 0:
        raise LeapsError(f"video has no decodable frames: {path}")
    _warn_if_short(total, clip.spec, str(path))
    indices = sample_indices(total, clip.spec, clip.frames)
    kept: dict[int, torch.Tensor] = {}
    for index, frame in enumerate(_decoded_frames(path)):
        if index in indices:
            kept[index] = torch.from_numpy(_rgb(frame)).permute(2, 0, 1)
        if len(kept) == len(set(indices)):
            break
    return [kept[i] for i in indices]
