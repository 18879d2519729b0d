"""Files as people's tools leave them: text saved with a UTF-8 byte-order mark (spreadsheets' "CSV UTF-8",
some editors' JSON), and folders holding what operating systems add (macOS's ``._*`` AppleDouble
companions and ``.DS_Store``, Windows' ``Thumbs.db`` and ``desktop.ini``, ``__MACOSX`` from archives)."""

import json
import struct

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from leaps_engine.cli import main
from leaps_engine.engine.adapters.base import InputSpec
from leaps_engine.engine.stimulus import expand_stimulus, load_stimulus, read_video_frames
from leaps_engine.errors import LeapsError
from leaps_engine.sweep.manifest import plan_jobs, read_manifest

BOM = "\ufeff"
APPLEDOUBLE = b"\x00\x05\x16\x07" + bytes(4092)  # a 4 KB AppleDouble header, not a video


def _spec():
    return InputSpec(frames=2, sampling_rate=1, crop_size=8, fixed_size=False, mean=(0.5,) * 3, std=(0.5,) * 3,
                     class_names=("a",))


def _junk(folder, *names):
    for name in names:
        if name == "__MACOSX":
            (folder / name).mkdir()
            (folder / name / "._clip.mp4").write_bytes(APPLEDOUBLE)
        else:
            (folder / name).write_bytes(APPLEDOUBLE)


# ---- byte-order marks -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_manifest_with_a_byte_order_mark_reads_like_one_without(tmp_path, suffix):
    rows = {".csv": "class,seed,steps\nmoving right,3,5\n",
            ".jsonl": json.dumps({"class": "moving right", "seed": 3, "steps": 5}) + "\n"}[suffix]
    plain, marked = tmp_path / f"plain{suffix}", tmp_path / f"marked{suffix}"
    plain.write_text(rows, encoding="utf-8")
    marked.write_text(BOM + rows, encoding="utf-8")
    assert read_manifest(marked) == read_manifest(plain)
    assert read_manifest(marked)[0].label == "moving right"


def test_a_labels_file_with_a_byte_order_mark_plans_like_one_without(tmp_path):
    torch.save(torch.rand(3, 8, 32, 32), tmp_path / "a.pt")
    (tmp_path / "labels.csv").write_text(BOM + "path,class\na.pt,orbiting\n", encoding="utf-8")
    (job,) = plan_jobs(tmp_path, ["embedded"], [0], labels_csv=tmp_path / "labels.csv")
    assert job.label == "orbiting"


def test_an_evaluate_manifest_with_a_byte_order_mark_is_read(tmp_path):
    (tmp_path / "paths.json").write_text(BOM + json.dumps(["nowhere"]), encoding="utf-8")
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "paths.json")])
    assert result.exit_code == 2 and result.output.strip().endswith(f"path not found: {tmp_path / 'nowhere'}")


# ---- operating-system junk ------------------------------------------------------------------------


def test_a_stimulus_folder_skips_appledouble_and_system_files(tmp_path):
    for seed in range(2):
        torch.save(torch.rand(3, 4, 16, 16), tmp_path / f"clip{seed}.pt")
    _junk(tmp_path, "._clip0.pt", "._clip1.mp4", ".DS_Store", "Thumbs.db", "desktop.ini", "__MACOSX")
    assert expand_stimulus(tmp_path) == [tmp_path / "clip0.pt", tmp_path / "clip1.pt"]


def test_a_frame_folder_skips_them_too(tmp_path):
    for index in range(3):
        Image.new("RGB", (16, 16), (40 * index,) * 3).save(tmp_path / f"frame{index}.png")
    _junk(tmp_path, "._frame0.png", ".DS_Store", "Thumbs.db")
    assert expand_stimulus(tmp_path) == [tmp_path]
    assert load_stimulus(tmp_path, _spec()).shape == (3, 2, 8, 8)


def test_a_folder_of_nothing_but_junk_is_one_error_line(tmp_path):
    _junk(tmp_path, "._clip.mp4", ".DS_Store", "Thumbs.db")
    with pytest.raises(LeapsError, match="holds no video, tensor or frame image"):
        expand_stimulus(tmp_path)
    result = CliRunner().invoke(main, ["synthesize", "--stimulus", str(tmp_path), "--steps", "1",
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: folder")
    assert not (tmp_path / "out").exists()


def test_sweep_plan_writes_no_job_for_junk(tmp_path):
    folder = tmp_path / "stimuli" / "growing"
    folder.mkdir(parents=True)
    torch.save(torch.rand(3, 8, 32, 32), folder / "clip.pt")
    _junk(folder, "._clip.pt", "._clip.mp4", ".DS_Store", "Thumbs.db", "__MACOSX")
    _junk(tmp_path / "stimuli", "._growing", ".DS_Store")
    (tmp_path / "stimuli" / ".Trashes").mkdir()
    (tmp_path / "stimuli" / ".Trashes" / "old.pt").write_bytes(APPLEDOUBLE)
    jobs = plan_jobs(tmp_path / "stimuli", ["embedded"], [0])
    assert [(job.label, job.stimulus) for job in jobs] == [("growing", (str(folder / "clip.pt"),))]


# ---- orientation and pixel shape --------------------------------------------------------------------------


def _video_with_a_white_left_band(path, sample_aspect_ratio=None):
    """A 64x48 (W x H) mp4 whose left quarter is white, the rest black."""
    av = pytest.importorskip("av")
    from fractions import Fraction

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        if sample_aspect_ratio:
            stream.codec_context.sample_aspect_ratio = Fraction(sample_aspect_ratio)
        pixels = np.zeros((48, 64, 3), np.uint8)
        pixels[:, :16] = 255
        for _ in range(4):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def _set_display_matrix(path, a, b, c, d):
    """Write the rotation part of the track header's display matrix (what `ffmpeg -metadata:s:v rotate=N`
    and phones write): [[a, b, 0], [c, d, 0], [tx, ty, 1]] in 16.16 fixed point."""
    data = bytearray(path.read_bytes())
    box = data.find(b"tkhd")
    version = data[box + 4]
    matrix = box + 8 + (28 if version == 1 else 20) + 8 + 8
    for offset, value in zip((0, 4, 12, 16), (a, b, c, d), strict=True):
        data[matrix + offset: matrix + offset + 4] = struct.pack(">i", int(value * 65536))
    path.write_bytes(bytes(data))
    return path


# degrees a player turns the picture clockwise -> the display matrix that says so; where the white band ends up
TURNS = {90: ((0, 1, -1, 0), "top"), 180: ((-1, 0, 0, -1), "right"), 270: ((0, -1, 1, 0), "bottom")}


def _white_side(clip):
    """Which side of the frames ``[3, T, H, W]`` is white: top, bottom, left or right."""
    grey = clip.mean(dim=(0, 1))
    height, width = grey.shape
    sides = {"top": grey[: height // 4].mean(), "bottom": grey[-height // 4:].mean(),
             "left": grey[:, : width // 4].mean(), "right": grey[:, -width // 4:].mean()}
    return max(sides, key=sides.get)


def _full_frame_spec():
    return InputSpec(frames=2, sampling_rate=1, crop_size=8, fixed_size=False, mean=(0.5,) * 3, std=(0.5,) * 3,
                     class_names=("a",))


@pytest.mark.parametrize("degrees", sorted(TURNS))
def test_a_rotated_phone_video_is_seen_as_a_player_shows_it(tmp_path, degrees):
    matrix, side = TURNS[degrees]
    path = _set_display_matrix(_video_with_a_white_left_band(tmp_path / "phone.mp4"), *matrix)
    frames, _ = read_video_frames(path)
    assert frames.shape[1:3] == ((64, 48) if degrees % 180 else (48, 64))  # H, W as displayed
    clip = load_stimulus(path, _full_frame_spec(), size=(2, *frames.shape[1:3]))
    assert _white_side(clip) == side


def test_an_unrotated_video_is_left_alone(tmp_path):
    path = _video_with_a_white_left_band(tmp_path / "plain.mp4")
    assert _white_side(load_stimulus(path, _full_frame_spec(), size=(2, 48, 64))) == "left"


@pytest.mark.parametrize(("aspect", "width"), [("2/1", 128), ("1/2", 32)])
def test_non_square_pixels_are_shown_at_their_display_aspect(tmp_path, aspect, width):
    path = _video_with_a_white_left_band(tmp_path / "anamorphic.mp4", sample_aspect_ratio=aspect)
    frames, _ = read_video_frames(path)
    assert frames.shape[1:3] == (48, width)


@pytest.mark.parametrize(("orientation", "side"), [(6, "top"), (3, "right"), (8, "bottom"), (1, "left")])
def test_jpeg_frames_follow_their_exif_orientation(tmp_path, orientation, side):
    """EXIF 6 = turn 90 degrees clockwise to view, 3 = 180, 8 = 90 counterclockwise."""
    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[:, :16] = 255
    for index in range(2):
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(pixels).save(tmp_path / f"frame{index}.jpg", exif=exif.tobytes())
    height, width = (64, 48) if orientation in (6, 8) else (48, 64)
    clip = load_stimulus(tmp_path, _full_frame_spec(), size=(2, height, width))
    assert _white_side(clip) == side
