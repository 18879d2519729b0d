"""The CLI end to end on the embedded model, and every bad-input case: one line, exit 2, nothing left behind."""

import json
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from leaps_engine import create_adapter
from leaps_engine.cli import main
from leaps_engine.engine.embedded.generator import CLASS_NAMES

RESULT_KEYS = {"target_class", "target_index", "model_top1", "model_target_prob", "verifier_top1",
               "verifier_target_prob", "mp4", "gif", "contact_sheet", "tensor", "snapshots", "history",
               "kept_restart", "restart_losses"}


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_synthesize_end_to_end_writes_every_output(tmp_path):
    out = tmp_path / "run"
    result = run_cli("synthesize", "--class", CLASS_NAMES[2], "--class", "4", "--steps", 6,
                     "--snapshots", "2,6", "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "result.json").read_text())
    assert summary["model"] == {"name": "embedded", "weights": "embedded"}
    assert summary["verifier"]["name"] == "embedded_verifier"
    assert summary["config"]["steps"] == 6
    assert summary["model_input_size"] == summary["verifier_input_size"] == summary["config"]["size"]
    assert summary["coherence_tap"] == "block3"  # the last tap: it has two frames at 8x32x32
    assert summary["acceleration"]["kernels_selected"] == "eager" and summary["acceleration"]["kernels_fallback"] is None
    assert torch.__version__.startswith(summary["versions"]["torch"])
    clips = summary["clips"]
    assert [c["target_index"] for c in clips] == [2, 4]
    for clip in clips:
        assert set(clip) >= RESULT_KEYS
        for key in ("mp4", "gif", "contact_sheet", "tensor"):
            assert (out / clip[key]).stat().st_size > 0
        assert len(clip["snapshots"]) == 2 and all((out / p).exists() for p in clip["snapshots"])
        assert len(clip["history"]["total"]) == 6
        assert 0.0 <= clip["model_target_prob"] <= 1.0
        video = torch.load(out / clip["tensor"], weights_only=True)
        assert video.shape == (3, *summary["config"]["size"])
        stimulus = torch.load(out / clip["stimulus_tensor"], weights_only=True)
        assert stimulus.shape == video.shape  # the stimulus is given x*'s size (paper Sec. 3.1)
    assert not list(out.rglob("*.tmp*"))
    assert "model top-1" in result.output


def test_console_script_runs_and_reports_errors_without_traceback(tmp_path):
    command = [sys.executable, "-m", "leaps_engine", "synthesize", "--steps", "2", "--out", str(tmp_path / "ok")]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert (tmp_path / "ok" / "result.json").exists()
    failed = subprocess.run([sys.executable, "-m", "leaps_engine", "synthesize", "--model", "x3d_mm",
                             "--out", str(tmp_path / "bad")], capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [failed.stderr.strip()]
    assert "Traceback" not in failed.stderr and "did you mean: x3d_m" in failed.stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated_mp4(tmp_path: Path) -> Path:
    from leaps_engine.outputs import video as video_io

    full = tmp_path / "full.mp4"
    video_io.write_mp4(full, torch.rand(3, 12, 32, 32), fps=5)
    data = full.read_bytes()
    return _write(tmp_path / "truncated.mp4", data[: len(data) // 3])


def _flat_mp4(tmp_path: Path) -> Path:
    """A grey clip with nothing in it: no object for the layers parameterisation (the embedded default) to move."""
    from leaps_engine.outputs import video as video_io

    path = tmp_path / "flat.mp4"
    video_io.write_mp4(path, torch.full((3, 12, 32, 32), 0.4), fps=5)
    return path


def _checkpoint_missing_keys(tmp_path: Path) -> Path:
    from leaps_engine import create_adapter

    state = create_adapter("embedded", weights="random").model.state_dict()
    state.pop(next(iter(state)))
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    return path


BAD_INPUTS = {
    "missing stimulus": (lambda t: ["--class", "0", "--stimulus", t / "nope.mp4"], "stimulus not found"),
    "text file as video": (lambda t: ["--class", "0", "--stimulus", _write(t / "notes.mp4", b"hello, not a video\n")],
                           "notes.mp4"),
    "zero-byte video": (lambda t: ["--class", "0", "--stimulus", _write(t / "empty.mp4", b"")], "empty.mp4"),
    "truncated mp4": (lambda t: ["--class", "0", "--stimulus", _truncated_mp4(t)], "truncated.mp4"),
    "stimulus without objects": (lambda t: ["--class", "0", "--stimulus", _flat_mp4(t)], "found no object to move"),
    "unknown model": (lambda t: ["--model", "r3d_19"], "unknown model 'r3d_19'"),
    "unknown class name": (lambda t: ["--class", "moving rigth"], "did you mean: moving right"),
    "class index out of range": (lambda t: ["--class", "999"], "out of range"),
    "missing weights file": (lambda t: ["--weights", t / "missing.pt"], "weights file not found"),
    "weights not a checkpoint": (lambda t: ["--weights", _write(t / "w.pt", b"junk" * 10)],
                                 "not a readable PyTorch checkpoint"),
    "weights with mismatched keys": (lambda t: ["--weights", _checkpoint_missing_keys(t)], "missing"),
    "zero steps": (lambda t: ["--steps", "0"], "steps must be >= 1"),
    "negative steps": (lambda t: ["--steps", "-5"], "steps must be >= 1"),
    "impossible size": (lambda t: ["--size", "0x32x32"], "size must be three positive integers"),
    "malformed size": (lambda t: ["--size", "8x32"], "--size must look like TxHxW"),
    "stimulus count mismatch": (lambda t: ["--class", "0", "--class", "1", "--stimulus", _truncated_mp4(t)],
                                "one --stimulus per --class"),
    "snapshot beyond the run": (lambda t: ["--steps", "3", "--snapshots", "5"], "beyond the last step"),
    "cuda graphs on the cpu": (lambda t: ["--cuda-graphs"] if not torch.cuda.is_available() else ["--dtype", "int4"],
                               "needs a CUDA device" if not torch.cuda.is_available() else "dtype"),
    "cuda without a gpu": (lambda t: ["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "tpu9"],
                           "device"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_one_line_and_leaves_nothing(tmp_path, case):
    make_args, message = BAD_INPUTS[case]
    out = tmp_path / "out"
    result = run_cli("synthesize", "--steps", "2", *make_args(tmp_path), "--out", out)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    error_lines = [line for line in lines if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0], result.stderr
    assert lines == error_lines, result.stderr  # no progress bar or other output around it
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not out.exists()


def test_triton_kernels_without_a_gpu_or_the_interpreter_are_a_user_error(tmp_path, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device runs the Triton kernels")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    result = run_cli("synthesize", "--steps", "1", "--kernels", "triton", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "error: --kernels triton is not available here" in result.stderr and "TRITON_INTERPRET" in result.stderr
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder(tmp_path):
    blocker = _write(tmp_path / "a-file", b"")
    result = run_cli("synthesize", "--steps", "1", "--out", blocker / "sub")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: cannot write {blocker / 'sub'}")


def test_models_layers_and_classes_commands():
    listing = run_cli("models")
    assert listing.exit_code == 0
    for name in ("embedded", "x3d_m", "swin3d_b", "r3d_18", "mvit_base_16x4"):
        assert name in listing.output
    layers = run_cli("layers", "embedded", "--shapes")
    assert layers.exit_code == 0 and "(coherence)" in layers.output and "lambda=" in layers.output
    classes = run_cli("classes", "embedded")
    assert classes.exit_code == 0 and all(name in classes.output for name in CLASS_NAMES)
    unknown = run_cli("classes", "x3d")
    assert unknown.exit_code == 2 and "did you mean" in unknown.stderr


def test_help_lists_every_option():
    result = run_cli("synthesize", "--help")
    for option in ("--model", "--weights", "--class", "--stimulus", "--steps", "--size", "--seed", "--device",
                   "--out", "--lambda-first", "--lambda-last", "--r", "--distance", "--verifier", "--snapshots",
                   "--dtype", "--channels-last", "--compile", "--cuda-graphs", "--kernels"):
        assert option in result.output


def test_multi_stimulus_priming_from_a_folder_and_from_repeated_stimuli(tmp_path):
    from leaps_engine.engine.embedded.generator import generate_stimulus

    folder = tmp_path / "moving_up"
    folder.mkdir()
    for seed in (1, 2):
        torch.save(generate_stimulus(3, seed=seed), folder / f"clip{seed}.pt")
    for args in (["--stimulus", folder], ["--stimulus", folder / "clip1.pt", "--stimulus", folder / "clip2.pt"]):
        out = tmp_path / f"run{len(args)}"
        result = run_cli("synthesize", "--class", "3", *args, "--steps", 2, "--out", out)
        assert result.exit_code == 0, result.output
        clip = json.loads((out / "result.json").read_text())["clips"][0]
        assert clip["stimulus"].count(" + ") == 1 and "clip1.pt" in clip["stimulus"]
        assert torch.load(out / clip["stimulus_tensor"], weights_only=True).shape == (3, 8, 32, 32)


def test_baseline_run_writes_no_stimulus_and_records_its_method(tmp_path):
    out = tmp_path / "am"
    result = run_cli("synthesize", "--method", "am", "--class", "2", "--steps", 3, "--parameterization", "pixel",
                     "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "result.json").read_text())
    assert summary["config"]["method"] == "am" and summary["config"]["objective"] == "full"
    clip = summary["clips"][0]
    assert clip["stimulus"] is None and "stimulus_tensor" not in clip
    assert (out / clip["contact_sheet"]).stat().st_size > 0
    layered = run_cli("synthesize", "--method", "am", "--class", "2", "--steps", 3, "--out", tmp_path / "layers")
    assert layered.exit_code == 0, layered.output  # the embedded default, layers, starts from a generated stimulus
    clip = json.loads((tmp_path / "layers" / "result.json").read_text())["clips"][0]
    assert clip["stimulus"] == "generated (class 2, seed 0)" and "stimulus_tensor" in clip


def test_threads_are_set_recorded_and_give_reproducible_videos(tmp_path):
    """Same seed and thread count: the same video, whatever else runs on the machine (each run in its own
    process, as a user runs them); result.json says how many threads produced it."""
    videos = []
    for name in ("first", "second"):
        out = tmp_path / name
        command = [sys.executable, "-m", "leaps_engine", "synthesize", "--steps", "5", "--threads", "1", "--out", str(out)]
        finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr[-2000:]
        summary = json.loads((out / "result.json").read_text())
        assert summary["threads"] == 1
        videos.append(torch.load(out / summary["clips"][0]["tensor"], weights_only=True))
    assert torch.equal(*videos)
    result = run_cli("synthesize", "--threads", 0, "--out", tmp_path / "bad")
    assert result.exit_code == 2 and "--threads" in result.output and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("args", [["synthesize", "--distance", "manhattan"], ["synthesize", "--no-such-option"],
                                  ["no-such-command"], ["bench", "--batch", "two"]])
def test_usage_errors_are_one_error_line_too(args):
    result = run_cli(*args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_an_offline_verifier_download_names_the_ways_out(tmp_path, monkeypatch):
    """A local model checkpoint, no network: the error is about the verifier and says what to pass."""
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))  # no cached weights
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    checkpoint = tmp_path / "r3d_18.pth"
    torch.save(create_adapter("r3d_18", weights="random").model.state_dict(), checkpoint)
    torch.save(torch.rand(3, 8, 40, 40), tmp_path / "clip.pt")
    result = run_cli("synthesize", "--model", "r3d_18", "--weights", checkpoint, "--class", "abseiling",
                     "--stimulus", tmp_path / "clip.pt", "--size", "4x32x32", "--steps", 1, "--out", tmp_path / "out")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()  # besides, torch.hub announces the download it then fails
    (line,) = [x for x in lines if x.startswith("error:")]
    assert line.startswith("error: the verifier x3d_s (R_feat) could not be built: could not download")
    assert "--verifier-weights" in line and "--verifier none" in line and "weights=" not in line
    assert not (tmp_path / "out").exists()


def test_help_imports_no_torch():
    """`leaps-engine --help` and each command's help print at once: the command line imports torch only
    in the commands that compute (importing it takes seconds)."""
    code = ("import sys\nfrom click.testing import CliRunner\nfrom leaps_engine.cli import main\n"
            "for args in ([], ['--help'], ['synthesize', '--help'], ['sweep', 'run', '--help'], ['bench', '-h']):\n"
            "    assert CliRunner().invoke(main, args).exit_code == 0, args\n"
            "print(sorted(name for name in sys.modules if name.split('.')[0] in ('torch', 'torchvision', 'numpy')))")
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.strip() == "[]"
