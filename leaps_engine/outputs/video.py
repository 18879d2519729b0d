"""Write synthesized videos: mp4, animated GIF, a PNG contact sheet, or a raw tensor.

Every writer takes a video ``[3, T, H, W]`` float in [0, 1] and writes through
:func:`leaps_engine._io.atomic_path`, so a failed write never leaves a half-written file behind. ``scale``
is an integer nearest-neighbour upscale, so that small clips (e.g. 32x32) are watchable. A destination
that cannot be written raises :class:`LeapsError` naming the path.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from leaps_engine._features import require
from leaps_engine._io import atomic_path
from leaps_engine.errors import LeapsError

MP4_CODECS = ("libx264", "mpeg4")  # H.264 if the PyAV wheel has it, else MPEG-4 Part 2
SHEET_MARGIN = 4  # pixels around the sheet and between rows
SHEET_GAP = 2  # pixels between frames of a row
SHEET_LABEL_HEIGHT = 16  # pixels of the label band above each row
SHEET_MAX_WIDTH = 4096  # pixels: wider rows shrink their frames to fit
GIF_MIN_DELAY_CS = 2  # browsers play GIF delays of 0 or 1 centisecond as 10


def to_uint8_frames(video: torch.Tensor, scale: int = 1) -> np.ndarray:
    """``[3, T, H, W]`` float in [0, 1] -> uint8 ``[T, H*scale, W*scale, 3]`` (nearest-neighbour upscale)."""
    if video.dim() != 4 or video.shape[0] != 3:
        raise ValueError(f"expected a video [3, T, H, W], got shape {tuple(video.shape)}")
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    frames = video.detach().float().cpu().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 3, 0)
    if scale > 1:
        frames = frames.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    return frames.contiguous().numpy()


def mp4_codec() -> str:
    """The first encoder of :data:`MP4_CODECS` that this PyAV build has."""
    for name in MP4_CODECS:
        try:
            require("av", "writing video files").codec.Codec(name, "w")
        except ValueError:  # av.codec.codec.UnknownCodecError
            continue
        return name
    raise LeapsError(f"this PyAV build has none of the mp4 encoders {', '.join(MP4_CODECS)}")


def write_mp4(path: str | Path, video: torch.Tensor, fps: float = 5, scale: int = 1) -> None:
    """Write ``[3, T, H, W]`` in [0, 1] as an H.264 (yuv420p) mp4.

    yuv420p needs even sizes: an odd height or width is padded by repeating the last row or column.
    """
    frames = to_uint8_frames(video, scale)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    av = require("av", "writing video files")
    with atomic_path(path) as temporary, av.open(str(temporary), "w", format="mp4") as container:
        stream = container.add_stream(mp4_codec(), rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if stream.codec_context.name == "libx264":
            stream.options = {"crf": "18"}  # visually lossless; the default (23) smears fine texture
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def write_gif(path: str | Path, video: torch.Tensor, fps: float = 5, scale: int = 1) -> None:
    """Write ``[3, T, H, W]`` in [0, 1] as an animated GIF that loops forever and lasts as long as the
    video at ``fps`` (``T / fps`` seconds, to within one frame).

    GIF delays are whole centiseconds, and browsers play a delay of 1 cs or less as 10 cs, so no delay is
    under :data:`GIF_MIN_DELAY_CS`: above 50 fps frames are dropped evenly (see :func:`gif_timing`).
    Pillow merges consecutive identical frames into one longer frame, so the timing is kept.
    """
    frames = to_uint8_frames(video, scale)
    indices, delays_cs = gif_timing(len(frames), fps)
    images = [Image.fromarray(frames[index]) for index in indices]
    with atomic_path(path) as temporary:
        images[0].save(temporary, format="GIF", save_all=True, append_images=images[1:],
                       duration=[10 * delay for delay in delays_cs], loop=0)


def gif_timing(frames: int, fps: float) -> tuple[list[int], list[int]]:
    """Which of ``frames`` frames a GIF shows and each one's delay in centiseconds.

    The total is ``round(100 * frames / fps)`` cs (at least the minimum delay), split into delays of at
    least :data:`GIF_MIN_DELAY_CS` whose running sums follow the video's clock; when the video's frames
    are shorter than that, evenly spaced frames are kept (frame ``k`` of ``n`` shows ``floor(k * frames / n)``).
    """
    if frames < 1 or fps <= 0:
        raise ValueError(f"need at least one frame and fps > 0, got {frames} frames at {fps} fps")
    total_cs = max(GIF_MIN_DELAY_CS, round(100 * frames / fps))
    shown = max(1, min(frames, total_cs // GIF_MIN_DELAY_CS))
    indices = [k * frames // shown for k in range(shown)]
    edges = [round(k * total_cs / shown) for k in range(shown + 1)]
    return indices, [edges[k + 1] - edges[k] for k in range(shown)]


def write_contact_sheet(path: str | Path, rows: list[tuple[str, torch.Tensor]], scale: int = 1) -> None:
    """Write a PNG grid with one labelled row of frames per ``(label, video [3, T, H, W])``.

    Rows may differ in length and size: every frame is resized (keeping its aspect ratio) to the tallest
    row's height times ``scale``, or less where the widest row would exceed :data:`SHEET_MAX_WIDTH`
    pixels (frames then shrink to fit). Each label is drawn in a band of :data:`SHEET_LABEL_HEIGHT`
    pixels above its row, so the sheet is ``2 * margin + widest row`` wide and
    ``margin + sum(label + row height + margin)`` tall.
    """
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    source_height = max(video.shape[2] for _, video in rows)
    row_height = source_height * scale
    widest = max(_row_width(video, row_height) for _, video in rows)
    if widest > SHEET_MAX_WIDTH - 2 * SHEET_MARGIN:
        longest = max(video.shape[1] for _, video in rows)
        room = SHEET_MAX_WIDTH - 2 * SHEET_MARGIN - SHEET_GAP * (longest - 1)
        row_height = max(1, int(row_height * room / (widest - SHEET_GAP * (longest - 1))))
    strips = [(label, _row_images(video, row_height)) for label, video in rows]
    widths = [sum(image.width for image in images) + SHEET_GAP * (len(images) - 1) for _, images in strips]
    sheet = Image.new(
        "RGB",
        (2 * SHEET_MARGIN + max(widths), SHEET_MARGIN + len(rows) * (SHEET_LABEL_HEIGHT + row_height + SHEET_MARGIN)),
        "white",
    )
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    top = SHEET_MARGIN
    for label, images in strips:
        draw.text((SHEET_MARGIN, top + 2), label, fill="black", font=font)
        left = SHEET_MARGIN
        for image in images:
            sheet.paste(image, (left, top + SHEET_LABEL_HEIGHT))
            left += image.width + SHEET_GAP
        top += SHEET_LABEL_HEIGHT + row_height + SHEET_MARGIN
    with atomic_path(path) as temporary:
        sheet.save(temporary, format="PNG")


def _frame_width(height: int, width: int, row_height: int) -> int:
    return max(1, round(width * row_height / height))


def _row_width(video: torch.Tensor, row_height: int) -> int:
    """Width of ``video``'s row at ``row_height``, gaps included."""
    frames, height, width = video.shape[1:]
    return frames * _frame_width(height, width, row_height) + SHEET_GAP * (frames - 1)


def _row_images(video: torch.Tensor, row_height: int) -> list[Image.Image]:
    """The frames of ``[3, T, H, W]`` as images ``row_height`` pixels tall: nearest neighbour when
    enlarged (pixels stay sharp), area-averaged when shrunk."""
    images = []
    for frame in to_uint8_frames(video):
        image = Image.fromarray(frame)
        size = (_frame_width(image.height, image.width, row_height), row_height)
        resample = Image.Resampling.NEAREST if row_height >= image.height else Image.Resampling.BOX
        images.append(image.resize(size, resample))
    return images


def write_tensor(path: str | Path, video: torch.Tensor) -> None:
    """Save ``video`` as a CPU float32 tensor with ``torch.save``."""
    with atomic_path(path) as temporary:
        torch.save(video.detach().cpu().float(), temporary)
