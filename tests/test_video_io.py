"""Writers: mp4 / GIF / contact sheet / tensor round trips, atomic writes and unwritable destinations."""

import os

import pytest
import torch
from PIL import Image

from leaps_engine._io import atomic_path
from leaps_engine.engine.stimulus import read_video_frames
from leaps_engine.errors import LeapsError
from leaps_engine.outputs import video as video_io
from leaps_engine.outputs.video import (
    SHEET_GAP,
    SHEET_LABEL_HEIGHT,
    SHEET_MARGIN,
    SHEET_MAX_WIDTH,
    mp4_codec,
    write_contact_sheet,
    write_gif,
    write_mp4,
    write_tensor,
)

av = pytest.importorskip("av", reason="PyAV is not installed (the GPU suite runs without it)")


def smooth_video(frames=6, height=48, width=64):
    """``[3, T, H, W]`` in [0, 1]: moving colour gradients, easy on lossy codecs, every frame different."""
    t = torch.linspace(0, 1, frames).view(frames, 1, 1)
    y = torch.linspace(0, 1, height).view(1, height, 1)
    x = torch.linspace(0, 1, width).view(1, 1, width)
    channels = [(x + t) / 2, (y + t) / 2, (x + y) / 2 + 0 * t]
    return torch.stack([c.expand(frames, height, width) for c in channels]).clamp(0, 1)


def test_mp4_codec_is_available():
    assert mp4_codec() in video_io.MP4_CODECS


@pytest.mark.parametrize(("height", "width", "scale"), [(48, 64, 1), (31, 33, 1), (31, 33, 2), (17, 16, 3)])
def test_mp4_round_trip(tmp_path, height, width, scale):
    video = smooth_video(6, height, width)
    path = tmp_path / "out.mp4"
    write_mp4(path, video, fps=8, scale=scale)
    frames, fps = read_video_frames(path)
    even = (height * scale + 1) // 2 * 2, (width * scale + 1) // 2 * 2  # odd sizes are padded by one
    assert frames.shape == (6, *even, 3)
    assert fps == pytest.approx(8)
    expected = video.repeat_interleave(scale, 2).repeat_interleave(scale, 3).permute(1, 2, 3, 0)
    decoded = frames[:, : height * scale, : width * scale].float() / 255
    assert (decoded - expected).abs().mean() < 0.03
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name in ("h264", "libx264")


def test_mp4_falls_back_to_mpeg4(tmp_path, monkeypatch):
    monkeypatch.setattr(video_io, "MP4_CODECS", ("no-such-encoder", "mpeg4"))
    path = tmp_path / "out.mp4"
    write_mp4(path, smooth_video(4, 32, 32))
    assert read_video_frames(path)[0].shape == (4, 32, 32, 3)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"


def test_gif_has_all_frames_and_loops(tmp_path):
    path = tmp_path / "out.gif"
    write_gif(path, smooth_video(5, 20, 30), fps=4, scale=2)
    with Image.open(path) as gif:
        assert gif.n_frames == 5
        assert gif.size == (60, 40)
        assert gif.info["loop"] == 0
        assert gif.info["duration"] == 250


@pytest.mark.parametrize(("frames", "fps"), [(8, 60), (30, 60), (16, 30), (24, 24), (5, 120), (1, 60)])
def test_gif_lasts_as_long_as_the_mp4_with_playable_delays(tmp_path, frames, fps):
    """GIF delays are whole centiseconds and browsers play 1 cs as 10 cs: frames are dropped evenly
    instead, and the total stays within a frame of frames / fps."""
    path = tmp_path / "out.gif"
    video = torch.rand(3, frames, 8, 8, generator=torch.Generator().manual_seed(frames))  # no two frames alike
    write_gif(path, video, fps=fps)
    with Image.open(path) as gif:
        delays = []
        for index in range(gif.n_frames):
            gif.seek(index)
            delays.append(gif.info["duration"])
    assert min(delays) >= 20  # milliseconds: 2 cs
    assert abs(sum(delays) - 1000 * frames / fps) <= max(1000 / fps, 20)
    assert len(delays) == (frames if 100 / fps >= 2 else max(1, round(100 * frames / fps) // 2))


def test_contact_sheet_rows_of_different_lengths_and_sizes(tmp_path):
    path = tmp_path / "sheet.png"
    stimulus, synthesized = smooth_video(8, 64, 48), smooth_video(5, 32, 32)
    write_contact_sheet(path, [("stimulus", stimulus), ("synthesized", synthesized)], scale=2)
    # both rows are 64 px tall before scaling: the stimulus row is 8 frames of 48, the other 5 of 64
    row_width = max(8 * 48 * 2 + 7 * SHEET_GAP, 5 * 64 * 2 + 4 * SHEET_GAP)
    row_height = SHEET_LABEL_HEIGHT + 64 * 2 + SHEET_MARGIN
    with Image.open(path) as sheet:
        assert sheet.format == "PNG"
        assert sheet.size == (2 * SHEET_MARGIN + row_width, SHEET_MARGIN + 2 * row_height)
        label_band = sheet.convert("L").crop((0, SHEET_MARGIN, 100, SHEET_MARGIN + SHEET_LABEL_HEIGHT))
        assert label_band.getextrema()[0] < 128  # the label was drawn


def test_a_long_contact_sheet_shrinks_its_frames_to_stay_readable(tmp_path):
    path = tmp_path / "sheet.png"
    video = smooth_video(32, 224, 224)  # 32 frames of 224: over 7,000 pixels side by side
    write_contact_sheet(path, [("stimulus", video), ("synthesized", video)], scale=1)
    with Image.open(path) as sheet:
        width, height = sheet.size
    assert SHEET_MAX_WIDTH - 40 <= width <= SHEET_MAX_WIDTH
    frame_height = (height - SHEET_MARGIN) // 2 - SHEET_LABEL_HEIGHT - SHEET_MARGIN
    assert 100 < frame_height < 224  # shrunk, aspect ratio kept (frames stay square)


def test_write_tensor_round_trip(tmp_path):
    video = smooth_video(3, 8, 8).double()
    write_tensor(tmp_path / "out.pt", video)
    loaded = torch.load(tmp_path / "out.pt", weights_only=True)
    assert loaded.dtype == torch.float32 and torch.equal(loaded, video.float())


WRITERS = {
    "out.mp4": lambda path, video: write_mp4(path, video),
    "out.gif": lambda path, video: write_gif(path, video),
    "out.png": lambda path, video: write_contact_sheet(path, [("x", video)]),
    "out.pt": lambda path, video: write_tensor(path, video),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_success_leaves_no_temporary_files(tmp_path, name):
    WRITERS[name](tmp_path / name, smooth_video(3, 16, 16))
    assert os.listdir(tmp_path) == [name]


def test_atomic_path_removes_temporary_on_error(tmp_path):
    destination = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"), atomic_path(destination) as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".mp4" and temporary.name.startswith(".")
        temporary.write_bytes(b"half")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_failing_writer_keeps_old_file_and_leaves_nothing(tmp_path, monkeypatch):
    destination = tmp_path / "out.gif"
    destination.write_bytes(b"old")

    def failing_save(image, path, *args, **kwargs):
        path.write_bytes(b"half a gif")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(LeapsError, match="No space left on device"):
        write_gif(destination, smooth_video(3, 8, 8))
    assert os.listdir(tmp_path) == ["out.gif"] and destination.read_bytes() == b"old"


@pytest.mark.parametrize("name", list(WRITERS))
def test_unwritable_destination_raises_leaps_error(tmp_path, name):
    (tmp_path / "file").write_text("a file, not a folder")
    for destination in (tmp_path / "missing" / name, tmp_path / "file" / name):
        with pytest.raises(LeapsError, match=f"cannot write {destination}"):
            WRITERS[name](destination, smooth_video(2, 8, 8))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_folder_raises_leaps_error(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    with pytest.raises(LeapsError, match="cannot write"):
        write_mp4(folder / "out.mp4", smooth_video(2, 8, 8))


def test_destination_is_a_folder(tmp_path):
    (tmp_path / "out.mp4").mkdir()
    with pytest.raises(LeapsError, match="cannot write"):
        write_mp4(tmp_path / "out.mp4", smooth_video(2, 8, 8))
    assert sorted(os.listdir(tmp_path)) == ["out.mp4"]


def test_the_engine_imports_without_pyav_and_video_files_then_name_it(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys\n"
        "sys.modules['av'] = None  # as if PyAV were not installed\n"
        "import torch, leaps_engine\n"
        "from leaps_engine.outputs import video as video_io\n"
        "from leaps_engine.errors import LeapsError\n"
        "try:\n"
        f"    video_io.write_mp4({str(tmp_path / 'x.mp4')!r}, torch.rand(3, 2, 8, 8))\n"
        "except LeapsError as error:\n"
        "    print(error)\n"
    )
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert finished.returncode == 0, finished.stderr
    assert "needs PyAV" in finished.stdout
    assert not (tmp_path / "x.mp4").exists()
