"""The lean step: same losses as the authors'-style reference, frozen weights, hooks that go away,
and every kernel backend, dtype and memory format giving the same synthesis, on the CPU and (marked
``gpu``, skipped without one) on a CUDA device."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import assert_same_losses, short_synthesis

from leaps_engine import SynthesisConfig
from leaps_engine.config import Acceleration
from leaps_engine.engine.latency import ReferenceStep
from leaps_engine.engine.step import LeapsObjective, priming_taps
from leaps_engine.errors import LeapsError
from leaps_engine.kernels import priming, registry
from leaps_engine.kernels._triton import TRITON_AVAILABLE
from leaps_engine.kernels.priming import tap_priming_loss_ref
from leaps_engine.kernels.registry import select_kernels, triton_problem

SIZE = (4, 16, 16)
TERMS = ("total", "ce", "priming", "coherence", "feature", "prior")
TRACE_SCRIPT = Path(__file__).with_name("trace_fused_step.py")
CUDA_TERMS = ("total", "ce", "priming", "coherence", "feature")

def _config(**overrides):
    return SynthesisConfig.from_preset("embedded", size=SIZE, **overrides)


def _inputs(model, batch=2):
    generator = torch.Generator().manual_seed(3)
    video = torch.randn((batch, 3, *SIZE), generator=generator)
    stimulus = model.spec.normalize(torch.rand((batch, 3, *SIZE), generator=generator))
    with torch.no_grad():
        _, taps = model.forward_with_taps(stimulus, priming_taps(model, _config()))
    means = [tap.float().mean(dim=(2, 3)) for tap in taps]
    return video, means, torch.tensor([1, 7][:batch])


def _forward_hook_count(adapter):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in adapter.modules())


@pytest.mark.parametrize("self_verifier", [False, True])
def test_lean_step_matches_the_reference_step(model, verifier, self_verifier):
    video, means, targets = _inputs(model)
    net = model if self_verifier else verifier
    with ReferenceStep(model, net, _config(), means, targets) as reference:
        _, expected = reference(video)
    with LeapsObjective(model, net, _config(), means, targets, Acceleration(kernels="eager").resolve("cpu")) as lean:
        _, losses = lean(video)
    for term in TERMS:
        torch.testing.assert_close(losses[term], expected[term].detach(), rtol=1e-5, atol=1e-6)
        assert losses[term].dtype == torch.float32 and losses[term].shape == (2,)
    assert float(losses["feature"].min()) > 0


def test_lean_step_computes_input_gradients_only_and_removes_its_hooks(model, verifier):
    video, means, targets = _inputs(model)
    video.requires_grad_(True)
    hooks_before = _forward_hook_count(model) + _forward_hook_count(verifier)
    with LeapsObjective(model, verifier, _config(), means, targets, Acceleration(kernels="eager").resolve("cpu")) as lean:
        assert _forward_hook_count(model) + _forward_hook_count(verifier) > hooks_before
        _, losses = lean(video)
        losses["total"].sum().backward()
    assert _forward_hook_count(model) + _forward_hook_count(verifier) == hooks_before
    assert video.grad is not None and video.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in [*model.parameters(), *verifier.parameters()])


def test_reference_step_turns_weight_gradients_on_then_off(model):
    video, means, targets = _inputs(model)
    with ReferenceStep(model, model, _config(), means, targets) as reference:
        _, losses = reference(video.requires_grad_(True))
        losses["total"].sum().backward()
        assert any(p.grad is not None for p in model.parameters())
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())


def _short_run(model, verifier, acceleration, steps=3):
    return short_synthesis(model, verifier, acceleration, steps=steps, size=SIZE)


@pytest.fixture(scope="module")
def eager_run(model, verifier):
    return _short_run(model, verifier, Acceleration(kernels="eager"))


def _assert_same_losses(result, expected, rtol=1e-4, atol=1e-5):
    assert_same_losses(result, expected, TERMS, rtol, atol)


def test_compile_kernels_give_the_eager_losses(model, verifier, eager_run):
    result = _short_run(model, verifier, Acceleration(kernels="compile"))
    assert result.kernels == "compile"
    _assert_same_losses(result, eager_run)


@pytest.mark.skipif(triton_problem(torch.device("cpu")) is not None, reason="Triton interpreter not available")
def test_triton_kernels_give_the_eager_losses(model, verifier, eager_run):
    result = _short_run(model, verifier, Acceleration(kernels="triton"))
    assert result.kernels == "triton"
    _assert_same_losses(result, eager_run)


def test_compiled_step_gives_the_eager_losses(model, verifier, eager_run):
    result = _short_run(model, verifier, Acceleration(kernels="eager", compile=True))
    _assert_same_losses(result, eager_run)
    assert result.timing["first_step_s"] > 0 and result.timing["steps_per_s"] > 0


def test_channels_last_gives_the_same_losses(model, verifier, eager_run):
    _assert_same_losses(_short_run(model, verifier, Acceleration(kernels="eager", channels_last=True)), eager_run)


def test_bfloat16_networks_keep_float32_losses_close_to_float32(model, verifier, eager_run):
    result = _short_run(model, verifier, Acceleration(kernels="eager", dtype="bfloat16"))
    assert all(result.history[term].dtype == torch.float32 for term in TERMS)
    torch.testing.assert_close(result.history["ce"][0], eager_run.history["ce"][0], rtol=0.1, atol=0.05)
    torch.testing.assert_close(result.history["priming"][0], eager_run.history["priming"][0], rtol=0.05, atol=0.02)


def test_float16_uses_loss_scaling_and_stays_finite(model, verifier):
    result = _short_run(model, verifier, Acceleration(kernels="eager", dtype="float16"), steps=4)
    assert all(torch.isfinite(result.history[term]).all() for term in TERMS)


def test_impossible_acceleration_settings_are_user_errors(model, verifier, monkeypatch):
    with pytest.raises(LeapsError, match="cuda-graphs needs a CUDA device"):
        _short_run(model, verifier, Acceleration(cuda_graphs=True, compile=True))
    with pytest.raises(LeapsError, match="unknown dtype"):
        _short_run(model, verifier, Acceleration(dtype="int8"))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(LeapsError, match="triton is not available here"):
        select_kernels("triton", torch.device("cpu"))


def test_auto_kernels_are_eager_on_the_cpu():
    assert select_kernels("auto", torch.device("cpu")).backend == "eager"


@pytest.mark.skipif(not TRITON_AVAILABLE, reason="the triton package is not installed")
def test_compiled_step_with_fused_kernels_is_one_graph(model):
    """torch.compile sees the whole step, every fused loss included, as one graph: a graph break in the
    losses costs a host round trip per tap and keeps CUDA graphs from capturing the step (seen on an
    H200: slow_r50 took 38 ms a step fused, against 15 ms compiled with the reference losses). Traced with real Triton kernels in a fresh interpreter."""
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, str(TRACE_SCRIPT)], env=environment, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    graphs, priming_ops, bn_ops = map(int, result.stdout.split())
    bn_layers = sum(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())
    assert (graphs, priming_ops, bn_ops) == (1, len(priming_taps(model, _config())), bn_layers)


# ---- the same on a CUDA device (`pytest -m gpu`) ----------------------------------------------------------
# float32 comparisons run with TF32 convolutions off: cuDNN's TF32 default differs by ~1e-3 between the
# eager and compiled layouts.


def _cuda_run(model, verifier, acceleration):
    if acceleration.compile or acceleration.cuda_graphs:
        torch.compiler.reset()  # a fresh graph: past dynamo's recompile limit the step would run eager
    return short_synthesis(model, verifier, acceleration, steps=4)


@pytest.fixture(scope="module")
def cuda_eager_run(cuda_model, cuda_verifier, ieee_float32_convolutions):
    return _cuda_run(cuda_model, cuda_verifier, Acceleration(kernels="eager", dtype="float32"))


@pytest.mark.parametrize(
    ("acceleration", "backend"),
    [
        (Acceleration(kernels="triton", dtype="float32"), "triton"),
        (Acceleration(kernels="compile", dtype="float32"), "compile"),
        (Acceleration(compile=True, kernels="triton", dtype="float32"), "triton"),  # the fused backend
        (Acceleration(compile=True, cuda_graphs=True, dtype="float32"), "triton"),  # auto: Triton on CUDA
    ],
    ids=["triton", "compile", "compiled-step-triton", "cuda-graphs"],
)
@pytest.mark.usefixtures("ieee_float32_convolutions")
@pytest.mark.gpu
def test_cuda_backends_give_the_eager_losses(cuda_model, cuda_verifier, cuda_eager_run, acceleration, backend):
    result = _cuda_run(cuda_model, cuda_verifier, acceleration)
    assert result.kernels == backend
    assert_same_losses(result, cuda_eager_run, CUDA_TERMS, float32=True)
    assert float(cuda_eager_run.history["feature"][0].min()) > 0  # R_feat is in play


@pytest.mark.parametrize("kernels", ["eager", "triton"])
@pytest.mark.usefixtures("ieee_float32_convolutions")
@pytest.mark.gpu
def test_cuda_bfloat16_networks_keep_float32_losses_close_to_float32(cuda_model, cuda_verifier, cuda_eager_run,
                                                                      kernels):
    result = _cuda_run(cuda_model, cuda_verifier, Acceleration(kernels=kernels, dtype="bfloat16"))
    assert all(result.history[term].dtype == torch.float32 for term in CUDA_TERMS)
    assert all(torch.isfinite(result.history[term]).all() for term in CUDA_TERMS)
    first = {term: values[0] for term, values in result.history.items()}
    torch.testing.assert_close(first["ce"], cuda_eager_run.history["ce"][0], rtol=0.1, atol=0.05)
    torch.testing.assert_close(first["priming"], cuda_eager_run.history["priming"][0], rtol=0.05, atol=0.02)


@pytest.mark.usefixtures("ieee_float32_convolutions")
@pytest.mark.gpu
def test_cuda_auto_checks_the_fused_losses_and_falls_back_to_compile(cuda_model, cuda_verifier, cuda_eager_run,
                                                                     monkeypatch):
    """A fused loss that disagrees with its reference on the run's own taps is dropped for the process."""
    monkeypatch.setattr(registry, "_triton_failure", None)
    monkeypatch.setattr(priming, "tap_priming_loss_triton",
                        lambda tap, target, weight: 1.1 * weight * tap_priming_loss_ref(tap, target, "jvs"))
    with pytest.warns(registry.KernelFallbackWarning, match="JVS priming"):
        result = _cuda_run(cuda_model, cuda_verifier, Acceleration(compile=True, kernels="auto", dtype="float32"))
    assert result.kernels == "compile" and "loss differs" in result.kernels_fallback
    assert_same_losses(result, cuda_eager_run, CUDA_TERMS, float32=True)
