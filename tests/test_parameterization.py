"""x*'s parameterisations (pixel, fourier, warp, layers) and the transformations applied before each forward: the start,
the bounds, per-video seeds, every kernel backend, and what result.json and manifests record."""

import json

import pytest
import torch
from click.testing import CliRunner
from helpers import assert_same_losses

from leaps_engine import SynthesisConfig, Target, synthesize
from leaps_engine.cli import main
from leaps_engine.config import Acceleration
from leaps_engine.engine import synthesis
from leaps_engine.engine.embedded.generator import generate_stimulus
from leaps_engine.engine.parameterization import (
    FourierParameterization,
    PixelParameterization,
    WarpParameterization,
    create_parameterization,
)
from leaps_engine.errors import LeapsError
from leaps_engine.kernels.registry import triton_problem
from leaps_engine.sweep.manifest import Job, read_manifest, write_manifest

SIZE = (4, 16, 16)
TERMS = ("total", "ce", "priming", "coherence", "feature", "prior")


def _fourier(model, seeds=(0,), **options):
    return FourierParameterization(seeds, SIZE, model.spec, torch.device("cpu"), **options)


def _high_frequency_share(pixels):
    """Share of the spatial spectral energy above half the Nyquist frequency, over ``[..., H, W]``."""
    grey = pixels.mean(dim=-4) if pixels.dim() >= 4 else pixels
    energy = torch.fft.rfft2(grey - grey.mean(dim=(-2, -1), keepdim=True)).abs() ** 2
    f_h = torch.fft.fftfreq(grey.shape[-2]).abs()[:, None]
    f_w = torch.fft.rfftfreq(grey.shape[-1])[None, :]
    high = torch.maximum(f_h, f_w) > 0.25
    return float(energy[..., high].sum() / energy.sum())


def test_the_pixel_start_is_the_papers_noise_per_seed(model):
    x_star = PixelParameterization([3, 4], SIZE, model.spec, torch.device("cpu"))
    expected = torch.randn((3, *SIZE), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(x_star.video()[1], expected)
    assert x_star.parameters()[0] is x_star.video()  # no copy: the parameter is x*


def test_fourier_pixels_stay_in_range_and_start_at_the_asked_spread(model):
    x_star = _fourier(model, seeds=(0, 1), init_scale=0.6)
    pixels = model.spec.denormalize(x_star.video().detach())
    assert pixels.shape == (2, 3, *SIZE) and float(pixels.min()) > 0 and float(pixels.max()) < 1
    logits = torch.logit(pixels.double())
    assert [round(float(v.std()), 3) for v in logits] == [0.6, 0.6]
    x_star.project(lr=0.2)  # nothing to clamp
    torch.testing.assert_close(model.spec.denormalize(x_star.video().detach()), pixels)


def test_fourier_videos_of_a_batch_equal_the_videos_made_alone(model):
    together = _fourier(model, seeds=(5, 9)).video().detach()
    alone = torch.cat([_fourier(model, seeds=(seed,)).video().detach() for seed in (5, 9)])
    torch.testing.assert_close(together, alone)


def test_a_steeper_spectrum_starts_smoother(model):
    shares = [_high_frequency_share(model.spec.denormalize(_fourier(model, spatial_decay=decay).video().detach()))
              for decay in (0.0, 1.0, 2.0)]
    assert shares[0] > shares[1] > shares[2]


def test_the_fourier_video_has_a_gradient_through_the_network(model):
    x_star = _fourier(model)
    model(x_star.video()).logsumexp(-1).sum().backward()
    (spectrum,) = x_star.parameters()
    assert spectrum.grad is not None and bool(spectrum.grad.abs().sum() > 0)


def _warp(model, frames, seeds=(0,), **options):
    return WarpParameterization(seeds, SIZE, model.spec, torch.device("cpu"), frames, **options)


def _square_frame(left=6, top=6):
    """One frame ``[1, 3, 16, 16]``: a white 4x4 square at column ``left``, row ``top``, on black."""
    frame = torch.zeros(1, 3, *SIZE[1:])
    frame[..., top:top + 4, left:left + 4] = 1.0
    return frame


def test_the_warp_video_starts_near_its_still_frame_and_keeps_its_pixels_valid(model):
    frame = _square_frame()
    x_star = _warp(model, frame.expand(2, -1, -1, -1), seeds=(0, 1))
    pixels = model.spec.denormalize(x_star.video().detach())  # [2, 3, T, H, W]
    assert pixels.shape == (2, 3, *SIZE)
    torch.testing.assert_close(pixels[:, :, 0], frame.expand(2, -1, -1, -1), atol=1e-5, rtol=0)  # D_0 = 0
    assert float(pixels.min()) >= -1e-6 and float(pixels.max()) <= 1 + 1e-6
    assert not torch.allclose(pixels[0], pixels[1])  # per-video seeds: different starting velocities
    velocities = x_star.parameters()[0].detach()
    assert velocities.shape == (2, SIZE[0] - 1, 2, 8, 8)
    assert [round(float(v.std()), 1) for v in velocities] == [0.1, 0.1]  # pixels per frame


def test_a_uniform_velocity_moves_the_frame_by_whole_pixels_per_frame(model):
    x_star = _warp(model, _square_frame(left=4, top=2), grid=4)
    with torch.no_grad():
        velocities = x_star.parameters()[0]
        velocities.zero_()
        velocities[:, :, 0] = 2.0  # 2 pixels per frame to the right (x)
        velocities[:, :, 1] = 3.0  # 3 pixels per frame down (y)
    pixels = model.spec.denormalize(x_star.video().detach())[0, 0]  # [T, H, W], one channel
    for t in range(SIZE[0]):
        torch.testing.assert_close(pixels[t], _square_frame(left=4 + 2 * t, top=2 + 3 * t)[0, 0], atol=1e-5, rtol=0)


def test_the_warp_velocities_get_a_gradient_through_the_network(model):
    frame = generate_stimulus(0, seed=1, size=SIZE[1])[:, 0][None]
    x_star = _warp(model, frame)
    model(x_star.video()).logsumexp(-1).sum().backward()
    (velocities,) = x_star.parameters()
    assert velocities.grad is not None and bool(velocities.grad.abs().sum() > 0)


@pytest.mark.parametrize("parameterization", ["warp", "layers"])
def test_a_moving_parameterization_needs_a_stimulus_frame_per_video_and_two_frames(model, parameterization):
    config = SynthesisConfig.from_preset("embedded", size=SIZE, parameterization=parameterization)
    with pytest.raises(LeapsError, match=f"the {parameterization} parameterisation .* has no stimulus"):
        create_parameterization(config, [0], model.spec, torch.device("cpu"), [None])
    with pytest.raises(LeapsError, match="one still frame"):
        create_parameterization(config, [0], model.spec, torch.device("cpu"), [torch.zeros(3, 4, 8, 8)])
    with pytest.raises(LeapsError, match="at least 2 frames"):
        SynthesisConfig.from_preset("embedded", size=(1, 16, 16), parameterization=parameterization)


def test_a_baseline_under_warp_starts_from_a_generated_stimulus(model):
    config = SynthesisConfig.from_preset("embedded", size=SIZE, steps=2, method="am", parameterization="warp")
    result = synthesize(model, [Target(3)], config=config, acceleration=Acceleration(kernels="eager"))
    assert result.stimuli[0] is not None and result.stimuli[0].shape == (3, *SIZE)
    torch.testing.assert_close(result.videos[0, :, 0], result.stimuli[0][:, 0], atol=1e-5, rtol=0)  # D_0 = 0
    assert torch.equal(result.history["priming"], torch.zeros(2, 1))  # a baseline: no priming


def test_transformations_are_off_in_the_papers_setting_and_never_reverse_time():
    config = SynthesisConfig.from_preset("embedded", paper=True, size=(6, 8, 8))
    video = torch.arange(6.0).view(1, 1, 6, 1, 1).expand(2, 3, 6, 8, 8)  # each frame holds its index
    generators = [torch.Generator().manual_seed(seed) for seed in (0, 1)]
    assert synthesis._augment(video, config, generators) is video
    shifted = synthesis._augment(video, config.replace(time_shift=2), generators)
    for clip in shifted:
        order = clip[0, :, 0, 0]
        assert all((order[t + 1] - order[t]) % 6 == 1 for t in range(5))  # a rotation of 0..5, never reversed
    zoomed = synthesis._augment(video, config.replace(scale_jitter=0.2, jitter=1), generators)
    assert zoomed.shape == video.shape
    torch.testing.assert_close(synthesis._zoom(video[0], 1.0), video[0])


@pytest.mark.parametrize("parameterization", ["fourier", "warp", "layers"])
@pytest.mark.parametrize("kernels", ["eager", "compile", "triton"])
def test_the_priors_with_transformations_run_on_every_kernel_backend(model, verifier, kernels, parameterization):
    if kernels == "triton" and triton_problem(torch.device("cpu")) is not None:
        pytest.skip("Triton interpreter not available")
    options = {"parameterization": parameterization, "jitter": 1, "scale_jitter": 0.1, "time_shift": 1}
    reference = _run(model, verifier, "eager", **options)
    result = _run(model, verifier, kernels, **options)
    assert result.kernels == kernels
    assert_same_losses(result, reference, TERMS)
    assert float(result.history["ce"][-1].mean()) < float(result.history["ce"][0].mean())


def _run(model, verifier, kernels, **options):
    config = SynthesisConfig.from_preset("embedded", size=SIZE, steps=4, **options)
    targets = [Target(2, generate_stimulus(2, seed=1, size=SIZE[1])), Target(6, generate_stimulus(6, seed=2, size=16))]
    return synthesize(model, targets, verifier=verifier, config=config, acceleration=Acceleration(kernels=kernels))


@pytest.mark.parametrize("parameterization", ["fourier", "warp", "layers"])
def test_a_batch_of_videos_equals_each_video_alone(model, verifier, parameterization):
    options = {"parameterization": parameterization, "jitter": 1, "time_shift": 1}
    together = _run(model, verifier, "eager", **options)
    config = SynthesisConfig.from_preset("embedded", size=SIZE, steps=4, **options)
    for index, (label, stimulus_seed) in enumerate(((2, 1), (6, 2))):
        target = Target(label, generate_stimulus(label, seed=stimulus_seed, size=SIZE[1]), seed=index)
        alone = synthesize(model, [target], verifier=verifier, config=config,
                           acceleration=Acceleration(kernels="eager"))
        torch.testing.assert_close(together.videos[index], alone.videos[0], atol=1e-4, rtol=0)


def test_the_papers_setting_is_plain_pixels_without_transformations(model, verifier):
    """``--paper`` gives the paper's method: a run equals one with every prior explicitly off."""
    def run(config):
        return synthesize(model, [Target(2, generate_stimulus(2, seed=1, size=SIZE[1]))], verifier=verifier,
                          config=config, acceleration=Acceleration(kernels="eager"))

    paper = run(SynthesisConfig.from_preset("embedded", paper=True, size=SIZE, steps=3))
    explicit = run(SynthesisConfig.from_preset("embedded", size=SIZE, steps=3, parameterization="pixel", init_scale=1.0,
                                               spatial_decay=1.0, jitter=0, time_shift=0, restarts=1,
                                               motion_sparsity=0.0))
    torch.testing.assert_close(paper.videos, explicit.videos)
    assert not torch.allclose(run(SynthesisConfig.from_preset("embedded", size=SIZE, steps=3)).videos, paper.videos)


def test_a_zero_first_gradient_is_a_warning():
    parameter = torch.zeros(3, requires_grad=True)
    parameter.grad = torch.zeros(3)
    with pytest.warns(synthesis.ZeroGradientWarning, match="init_scale"):
        synthesis._warn_if_gradient_is_zero([parameter])


@pytest.mark.parametrize(("option", "value", "message"), [
    ("parameterization", "wavelet", "unknown parameterization"),
    ("init_scale", 0.0, "init_scale must be > 0"),
    ("scale_jitter", 1.0, "scale_jitter must be in"),
    ("time_shift", 4, "time_shift must be in"),
    ("spatial_decay", -1.0, "spatial_decay must be >= 0"),
    ("warp_grid", 0, "warp_grid must be >= 1"),
])
def test_impossible_priors_are_user_errors(option, value, message):
    with pytest.raises(LeapsError, match=message):
        SynthesisConfig.from_preset("embedded", size=SIZE, **{option: value})


def test_the_command_line_records_the_priors(tmp_path):
    out = tmp_path / "run"
    arguments = ["synthesize", "--steps", "2", "--size", "4x16x16", "--parameterization", "fourier",
                 "--init-scale", "0.5", "--spatial-decay", "1.5", "--temporal-decay", "0.5", "--jitter", "1",
                 "--scale-jitter", "0.1", "--time-shift", "1", "--out", str(out)]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "result.json").read_text())["config"]
    assert {key: config[key] for key in ("parameterization", "init_scale", "spatial_decay", "temporal_decay",
                                         "jitter", "scale_jitter", "time_shift")} == {
        "parameterization": "fourier", "init_scale": 0.5, "spatial_decay": 1.5, "temporal_decay": 0.5,
        "jitter": 1, "scale_jitter": 0.1, "time_shift": 1}
    bad = CliRunner().invoke(main, ["synthesize", "--time-shift", "9", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and bad.output.strip().startswith("error: time_shift must be in")
    warp = CliRunner().invoke(main, ["synthesize", "--steps", "2", "--size", "4x16x16", "--parameterization", "warp",
                                     "--warp-grid", "4", "--out", str(tmp_path / "warp")])
    assert warp.exit_code == 0, warp.output
    assert json.loads((tmp_path / "warp" / "result.json").read_text())["config"]["warp_grid"] == 4


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_manifests_carry_the_priors(tmp_path, suffix):
    jobs = [Job("growing", seed=3, parameterization="fourier", init_scale=0.5, scale_jitter=0.1, time_shift=1),
            Job("0", jitter=2, spatial_decay=1.5, parameterization="warp", warp_grid=4)]
    write_manifest(tmp_path / f"m{suffix}", jobs)
    assert read_manifest(tmp_path / f"m{suffix}") == jobs
    assert jobs[0].settings()["parameterization"] == "fourier" and jobs[1].settings()["warp_grid"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("parameterization", ["fourier", "warp"])
@pytest.mark.parametrize(("name", "size"), [("r3d_18", (4, 32, 32)), ("x3d_xs", (4, 32, 32))])
def test_the_priors_work_for_kinetics_models_too(name, size, parameterization):
    """A size-flexible and a fixed-size (x* resized to 4x160x160) Kinetics model, random weights."""
    from leaps_engine import create_adapter

    model = create_adapter(name, weights="random")
    config = SynthesisConfig.from_preset(name, size=size, steps=2, parameterization=parameterization, jitter=1,
                                         scale_jitter=0.1, time_shift=1)
    targets = [Target(0, torch.rand((3, 48, 32, 32), generator=torch.Generator().manual_seed(0)))]  # a full clip span
    result = synthesize(model, targets, verifier=None, config=config, acceleration=Acceleration(kernels="eager"))
    assert result.videos.shape == (1, 3, *size) and torch.isfinite(result.history["total"]).all()
    assert float(result.videos.std()) > 0.01
