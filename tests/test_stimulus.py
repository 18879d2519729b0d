"""Loading stimuli: containers, sampling, looping, folders, tensors, resize/crop, and every bad input."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from leaps_engine.engine.adapters.base import InputSpec
from leaps_engine.engine.stimulus import StimulusWarning, load_stimulus, read_video_frames, sample_indices
from leaps_engine.errors import LeapsError

av = pytest.importorskip("av", reason="PyAV is not installed (the GPU suite runs without it)")

STEP = 12  # frame i is flat grey at level i * STEP, so the index can be read back from the pixels
ENCODERS = {".mp4": "libx264", ".mkv": "libx264", ".mov": "mpeg4", ".avi": "mpeg4", ".webm": "libvpx"}


def make_spec(frames=4, rate=3, crop=32):
    return InputSpec(
        frames=frames, sampling_rate=rate, crop_size=crop, fixed_size=True,
        mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225), class_names=("a", "b"),
    )  # fmt: skip


def write_video(path, count=20, size=(48, 64), fps=10):
    """A ``count``-frame video ``size`` = (H, W) whose frame i is flat grey at level ``i * STEP``."""
    levels = [i * STEP for i in range(count)]
    if path.suffix == ".gif":
        images = [Image.new("RGB", (size[1], size[0]), (v, v, v)) for v in levels]
        images[0].save(path, save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)
        return path
    with av.open(str(path), "w") as container:
        stream = container.add_stream(ENCODERS[path.suffix], rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for v in levels:
            frame = av.VideoFrame.from_ndarray(np.full((*size, 3), v, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def frame_indices(clip):
    """The source frame index encoded in each frame of ``[3, T, H, W]``."""
    return (clip.mean(dim=(0, 2, 3)) * 255 / STEP).round().long().tolist()


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".webm", ".mkv", ".mov", ".gif"])
def test_video_containers_decode_centred_strided_clip(tmp_path, suffix):
    path = write_video(tmp_path / f"clip{suffix}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", StimulusWarning)
        clip = load_stimulus(path, make_spec(frames=4, rate=3, crop=32))
    assert clip.shape == (3, 4, 32, 32) and clip.dtype == torch.float32
    assert clip.min() >= 0 and clip.max() <= 1
    # 20 frames, a 12-frame clip centred: frames 4..15, every 3rd
    assert frame_indices(clip) == [4, 7, 10, 13]


def test_read_video_frames(tmp_path):
    frames, fps = read_video_frames(write_video(tmp_path / "clip.mp4", count=20, fps=10))
    assert frames.shape == (20, 48, 64, 3) and frames.dtype == torch.uint8
    assert fps == pytest.approx(10)
    assert (frames.float().mean(dim=(1, 2, 3)) / STEP).round().long().tolist() == list(range(20))


def test_sample_indices():
    assert sample_indices(100, make_spec(frames=4, rate=2)) == [46, 48, 50, 52]
    assert sample_indices(8, make_spec(frames=4, rate=2)) == [0, 2, 4, 6]
    assert sample_indices(3, make_spec(frames=4, rate=2)) == [0, 2, 1, 0]


def test_fewer_frames_than_the_model_clip_spread_over_its_time_span():
    spec = make_spec(frames=16, rate=2)  # the native clip spans 32 source frames
    native = sample_indices(100, spec)
    assert native == list(range(34, 66, 2))
    assert sample_indices(100, spec, frames=8) == native[::2]  # every other frame of the span
    assert sample_indices(100, spec, frames=32) == list(range(34, 66))
    assert sample_indices(100, spec, frames=3) == [34, 44, 55]  # floor(i * 32 / 3)


def test_a_stimulus_takes_the_size_it_is_asked_for(tmp_path):
    path = write_video(tmp_path / "clip.mp4", count=20, size=(48, 64))
    clip = load_stimulus(path, make_spec(frames=4, rate=2), size=(2, 24, 40))  # wider than tall
    assert clip.shape == (3, 2, 24, 40)
    assert frame_indices(clip) == [6, 10]  # the span of 8 frames centred at 6..13, every 4th frame
    with pytest.raises(LeapsError, match="stimulus size must be three positive integers"):
        load_stimulus(path, make_spec(), size=(0, 24, 40))


def test_non_square_crop_keeps_the_centre():
    video = torch.zeros(3, 1, 60, 60)
    video[:, :, 15:45, :] = 1  # a horizontal band across the middle
    clip = load_stimulus(video, make_spec(frames=1, rate=1), size=(1, 30, 60))
    assert clip.shape == (3, 1, 30, 60) and torch.allclose(clip, torch.ones(()), atol=1e-4)


def test_short_video_loops_and_warns(tmp_path):
    path = write_video(tmp_path / "short.mp4", count=5)
    with pytest.warns(StimulusWarning, match="has 5 frames but 8 are needed"):
        clip = load_stimulus(path, make_spec(frames=4, rate=2))
    assert frame_indices(clip) == [0, 2, 4, 1]


def test_frame_folder_natural_sort(tmp_path):
    for n in range(1, 13):  # frame1.png .. frame12.png; a plain sort would put frame10 second
        Image.new("RGB", (64, 48), (n * STEP,) * 3).save(tmp_path / f"frame{n}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    clip = load_stimulus(tmp_path, make_spec(frames=4, rate=3))
    assert clip.shape == (3, 4, 32, 32)
    assert frame_indices(clip) == [1, 4, 7, 10]


def level_video(count=12, size=(32, 32)):
    """uint8 ``[T, H, W, 3]`` whose frame i is flat grey at level ``i * STEP``."""
    levels = torch.arange(count, dtype=torch.uint8) * STEP
    return levels.view(count, 1, 1, 1).expand(count, *size, 3).contiguous()


@pytest.mark.parametrize("layout", ["cthw_float", "cthw_uint8", "thwc_uint8"])
@pytest.mark.parametrize("suffix", [".pt", ".pth", None])
def test_tensor_layouts(tmp_path, layout, suffix):
    video = {
        "cthw_float": level_video().permute(3, 0, 1, 2).float() / 255,
        "cthw_uint8": level_video().permute(3, 0, 1, 2),
        "thwc_uint8": level_video(),
    }[layout]
    source = video if suffix is None else tmp_path / f"video{suffix}"
    if suffix is not None:
        torch.save(video, source)
    clip = load_stimulus(source, make_spec(frames=4, rate=3))
    assert clip.shape == (3, 4, 32, 32)
    assert frame_indices(clip) == [0, 3, 6, 9]


@pytest.mark.parametrize("landscape", [True, False])
def test_resize_shorter_side_and_centre_crop(landscape):
    # 40x80: left quarter red, middle half green, right quarter blue -> the centre crop is all green
    video = torch.zeros(3, 2, 40, 80)
    video[0, :, :, :20] = 1
    video[1, :, :, 20:60] = 1
    video[2, :, :, 60:] = 1
    if not landscape:
        video = video.transpose(2, 3)
    clip = load_stimulus(video, make_spec(frames=2, rate=1, crop=20))
    assert clip.shape == (3, 2, 20, 20)
    inner = clip[..., 2:-2] if landscape else clip[..., 2:-2, :]
    assert torch.allclose(inner[1], torch.ones(()), atol=1e-4)
    assert inner[0].max() < 1e-4 and inner[2].max() < 1e-4


def truncated_mp4(tmp_path):
    path = write_video(tmp_path / "cut.mp4")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def zero_frame_avi(tmp_path):
    path = tmp_path / "empty.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 64, 48
        container.start_encoding()
    return path


def corrupt_image_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in range(12):
        Image.new("RGB", (8, 8)).save(folder / f"{n}.png")
    (folder / "3.png").write_bytes(b"\x89PNG garbage")  # a sampled frame (0, 3, 6, 9)
    return folder


def write_file(name, data):
    def make(tmp_path):
        path = tmp_path / name
        if isinstance(data, torch.Tensor | dict):
            torch.save(data, path)
        else:
            path.write_bytes(data)
        return path

    return make


def make_folder(*files):
    def make(tmp_path):
        folder = tmp_path / "frames"
        folder.mkdir()
        for name in files:
            (folder / name).write_text("x")
        return folder

    return make


BAD_INPUTS = {
    "missing": (lambda tmp_path: tmp_path / "nope.mp4", "stimulus not found"),
    "text_as_mp4": (write_file("text.mp4", b"hello, this is not a video\n" * 40), "cannot decode video"),
    "zero_bytes": (write_file("zero.mp4", b""), "cannot decode video"),
    "truncated_mp4": (truncated_mp4, "cannot decode video"),
    "zero_frames": (zero_frame_avi, "no decodable frames"),
    "empty_folder": (make_folder(), "no frame images"),
    "folder_without_images": (make_folder("a.txt", "b.csv"), "no frame images"),
    "corrupt_image": (corrupt_image_folder, "cannot read image"),
    "unsupported_extension": (write_file("video.txt", b"x"), "unsupported stimulus type '.txt'"),
    "no_extension": (write_file("video", b"x"), "unsupported stimulus type"),
    "tensor_bad_shape": (write_file("v.pt", torch.zeros(2, 4, 8, 8)), "shape"),
    "tensor_thwc_float": (write_file("v.pt", torch.zeros(4, 8, 8, 3)), "shape"),
    "tensor_bad_dtype": (write_file("v.pt", torch.zeros(3, 4, 8, 8, dtype=torch.int32)), "dtype"),
    "tensor_out_of_range": (write_file("v.pt", torch.full((3, 4, 8, 8), 2.0)), r"outside \[0, 1\]"),
    "tensor_empty": (write_file("v.pt", torch.zeros(3, 0, 8, 8)), "empty"),
    "not_a_tensor": (write_file("v.pt", {"video": torch.zeros(1)}), "not a video tensor"),
    "garbage_pt": (write_file("v.pth", b"not a pickle"), "cannot load tensor file"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_leaps_error(tmp_path, case):
    make, message = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(LeapsError, match=message) as error:
        load_stimulus(path, make_spec())
    assert str(path) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "video", [torch.zeros(2, 4, 8, 8), torch.zeros(3, 4, 8, 8, dtype=torch.int64), torch.full((3, 2, 4, 4), -0.5)]
)
def test_bad_in_memory_tensor_raises_leaps_error(video):
    with pytest.raises(LeapsError, match="the stimulus tensor"):
        load_stimulus(video, make_spec())


def test_read_video_frames_bad_file(tmp_path):
    path = write_file("text.avi", b"plain text")(tmp_path)
    with pytest.raises(LeapsError, match="cannot decode video"):
        read_video_frames(path)
