"""Load a stimulus video as the model's input clip.

A stimulus is a video file, a folder of frame images, a saved tensor (``.pt``/``.pth``) or an in-memory
tensor. :func:`load_stimulus` turns any of them into pixels ``[3, T, S, S]`` in [0, 1], where
``T = spec.frames`` and ``S = spec.crop_size``:

* Sampling: the clip spans ``frames * sampling_rate`` source frames and is centred in the video (the
  usual single-clip evaluation protocol); every ``sampling_rate``-th frame of it is kept. A source shorter
  than that is looped (indices taken modulo its length, starting at frame 0) with a :class:`StimulusWarning`.
* Space: each frame's shorter side is resized to ``S`` (bilinear, antialiased), then centre-cropped.

Only the sampled frames are converted (videos are decoded twice: once to count, once to keep), and only
the sampled images of a folder are read. Every problem with the input raises :class:`LeapsError`.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.nn import functional as F

from leaps_engine.engine.adapters.base import InputSpec
from leaps_engine.engine.video_io import pyav

if TYPE_CHECKING:
    import av
from leaps_engine.errors import LeapsError, one_line

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".gif", ".mov")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
TENSOR_EXTENSIONS = (".pt", ".pth")


class StimulusWarning(UserWarning):
    """The stimulus was usable but had to be adapted (e.g. looped because it was too short)."""


def load_stimulus(source: str | Path | torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """Pixels ``[3, spec.frames, spec.crop_size, spec.crop_size]`` float32 in [0, 1] (not normalised)."""
    if isinstance(source, torch.Tensor):
        name = "the stimulus tensor"
        return _fit_clip(_sample(_tensor_frames(source, name), spec, name), spec)
    path = Path(source)
    if not path.exists():
        raise LeapsError(f"stimulus not found: {path}")
    if path.is_dir():
        frames = _sample(_image_files(path), spec, str(path))
        return _fit_clip([_read_image(file) for file in frames], spec)
    suffix = path.suffix.lower()
    if suffix in TENSOR_EXTENSIONS:
        frames = _tensor_frames(_load_tensor_file(path), str(path))
        return _fit_clip(_sample(frames, spec, str(path)), spec)
    if suffix in VIDEO_EXTENSIONS:
        return _fit_clip(_read_video_sample(path, spec), spec)
    supported = ", ".join(VIDEO_EXTENSIONS + TENSOR_EXTENSIONS)
    kind = suffix or "(no extension)"
    raise LeapsError(f"unsupported stimulus type {kind!r}: {path} (expected a frame folder or {supported})")


def expand_stimulus(source: str | Path) -> list[Path]:
    """The stimuli a path stands for: a folder holding video or tensor files stands for each of them
    (multi-stimulus priming, Supp. S5); anything else (a file, a folder of frames) for itself."""
    path = Path(source)
    if not path.is_dir():
        return [path]
    clips = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS + TENSOR_EXTENSIONS)
    return clips or [path]


def read_video_frames(path: str | Path) -> tuple[torch.Tensor, float]:
    """All frames of a video as uint8 ``[T, H, W, 3]`` (RGB, at the first frame's size) and its fps (0.0 if unknown)."""
    path = Path(path)
    frames: list[np.ndarray] = []
    for frame in _decoded_frames(path):
        frames.append(_rgb(frame, (frames[0].shape[1], frames[0].shape[0]) if frames else None))
    if not frames:
        raise LeapsError(f"video has no decodable frames: {path}")
    return torch.from_numpy(np.stack(frames)), _video_fps(path)


def sample_indices(total: int, spec: InputSpec) -> list[int]:
    """Indices of the ``spec.frames`` frames to keep out of ``total`` >= 1 (centred clip, looped if short)."""
    span = spec.frames * spec.sampling_rate
    start = max((total - span) // 2, 0)
    return [(start + i * spec.sampling_rate) % total for i in range(spec.frames)]


def _sample(frames: Sequence, spec: InputSpec, name: str) -> list:
    """The items of ``frames`` at :func:`sample_indices`, warning if the source had to be looped."""
    _warn_if_short(len(frames), spec, name)
    return [frames[i] for i in sample_indices(len(frames), spec)]


def _warn_if_short(total: int, spec: InputSpec, name: str) -> None:
    needed = spec.frames * spec.sampling_rate
    if total < needed:
        message = (
            f"{name} has {total} frames but {needed} are needed ({spec.frames} frames x sampling rate "
            f"{spec.sampling_rate}); looping it"
        )
        warnings.warn(message, StimulusWarning, stacklevel=4)


def _fit_clip(frames: Sequence[torch.Tensor], spec: InputSpec) -> torch.Tensor:
    """Frames (each ``[3, H, W]``, uint8 or float in [0, 1]) -> ``[3, T, S, S]`` float32, resized and centre-cropped."""
    size = spec.crop_size
    fitted = []
    for frame in frames:
        frame = frame.float() / 255 if frame.dtype == torch.uint8 else frame.float()
        height, width = frame.shape[1:]
        scale = size / min(height, width)
        new_size = (max(size, round(height * scale)), max(size, round(width * scale)))
        if new_size != (height, width):
            frame = F.interpolate(frame[None], size=new_size, mode="bilinear", antialias=True, align_corners=False)[0]
        top, left = (new_size[0] - size) // 2, (new_size[1] - size) // 2
        fitted.append(frame[:, top : top + size, left : left + size])
    return torch.stack(fitted, dim=1).clamp_(0, 1).contiguous()


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
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise LeapsError(f"no frame images ({', '.join(IMAGE_EXTENSIONS)}) in folder {folder}")
    return sorted(files, key=_natural_key)


def _read_image(path: Path) -> torch.Tensor:
    """An image file as uint8 ``[3, H, W]`` RGB."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise LeapsError(f"cannot read image {path}: {one_line(error)}") from None
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)


# --- video files -------------------------------------------------------------------------------------------


def _decoded_frames(path: Path) -> Iterator[av.VideoFrame]:
    """Decode the first video stream of ``path``, turning PyAV errors into :class:`LeapsError`."""
    av = pyav()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise LeapsError(f"no video stream in {path}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            yield from container.decode(stream)
    except av.error.FFmpegError as error:
        raise LeapsError(f"cannot decode video {path}: {one_line(error)}") from None


def _rgb(frame: av.VideoFrame, size: tuple[int, int] | None = None) -> np.ndarray:
    """A decoded frame as uint8 ``[H, W, 3]`` RGB, at ``size`` = (width, height) if given."""
    width, height = size or (frame.width, frame.height)
    return frame.reformat(width=width, height=height, format="rgb24").to_ndarray()


def _video_fps(path: Path) -> float:
    with pyav().open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else 0.0


def _read_video_sample(path: Path, spec: InputSpec) -> list[torch.Tensor]:
    """The sampled frames of a video, each uint8 ``[3, H, W]``."""
    total = sum(1 for _ in _decoded_frames(path))
    if total == 0:
        raise LeapsError(f"video has no decodable frames: {path}")
    _warn_if_short(total, spec, str(path))
    indices = sample_indices(total, spec)
    kept: dict[int, torch.Tensor] = {}
    for index, frame in enumerate(_decoded_frames(path)):
        if index in indices:
            kept[index] = torch.from_numpy(_rgb(frame)).permute(2, 0, 1)
        if len(kept) == len(set(indices)):
            break
    return [kept[i] for i in indices]
