"""On a CUDA device: every kernel backend and compile mode gives the eager synthesis, every latency
backend runs, and the fused kernels at bfloat16/float16 are as accurate as torch's own eager math.

Skipped without CUDA (``pytest -m gpu`` selects these on a GPU machine). float32 comparisons run with
TF32 convolutions off: cuDNN's TF32 default differs by ~1e-3 between the eager and compiled layouts.
"""

import pytest
import torch

from leaps_engine import SynthesisConfig, Target, create_adapter, synthesize
from leaps_engine.config import Acceleration
from leaps_engine.engine.embedded.generator import generate_stimulus
from leaps_engine.engine.latency import BENCH_BACKENDS, measure_latency
from leaps_engine.kernels import priming, registry
from leaps_engine.kernels.bn_stats import (
    bn_statistics_loss_ref,
    bn_statistics_loss_triton,
)
from leaps_engine.kernels.priming import tap_priming_loss_ref, tap_priming_loss_triton

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

TERMS = ("total", "ce", "priming", "coherence", "feature")
# (B, C, T, H, W): odd, not powers of two, several chunks per video in both kernels' stage 1.
MEDIUM_SHAPE = (3, 96, 5, 23, 29)
PRIMING_WEIGHT = 0.7


@pytest.fixture(scope="module", autouse=True)
def ieee_float32_convolutions():
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def model():
    return create_adapter("embedded", device="cuda")


@pytest.fixture(scope="module")
def verifier():
    return create_adapter("embedded_verifier", device="cuda")


def _run(model, verifier, acceleration):
    if acceleration.compile or acceleration.cuda_graphs:
        torch.compiler.reset()  # a fresh graph: past dynamo's recompile limit the step would run eager
    target = Target(2, generate_stimulus(2, seed=1))
    config = SynthesisConfig.from_preset("embedded", steps=4)
    return synthesize(model, [target], verifier=verifier, config=config, acceleration=acceleration)


@pytest.fixture(scope="module")
def eager_run(model, verifier):
    return _run(model, verifier, Acceleration(kernels="eager", dtype="float32"))


def _assert_same_losses(result, expected, rtol=1e-4, atol=1e-5):
    for term in TERMS:
        assert result.history[term].dtype == torch.float32
        torch.testing.assert_close(result.history[term], expected.history[term], rtol=rtol, atol=atol)


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
def test_backends_give_the_eager_losses(model, verifier, eager_run, acceleration, backend):
    result = _run(model, verifier, acceleration)
    assert result.kernels == backend
    _assert_same_losses(result, eager_run)
    assert float(eager_run.history["feature"][0].min()) > 0  # R_feat is in play


@pytest.mark.parametrize("kernels", ["eager", "triton"])
def test_bfloat16_networks_keep_float32_losses_close_to_float32(model, verifier, eager_run, kernels):
    result = _run(model, verifier, Acceleration(kernels=kernels, dtype="bfloat16"))
    assert all(result.history[term].dtype == torch.float32 for term in TERMS)
    assert all(torch.isfinite(result.history[term]).all() for term in TERMS)
    first = {term: values[0] for term, values in result.history.items()}
    torch.testing.assert_close(first["ce"], eager_run.history["ce"][0], rtol=0.1, atol=0.05)
    torch.testing.assert_close(first["priming"], eager_run.history["priming"][0], rtol=0.05, atol=0.02)


@pytest.mark.parametrize("backend", BENCH_BACKENDS)
def test_latency_backends_run_on_cuda(model, backend):
    row = measure_latency(model, model, (8, 64, 64), 2, backend, "bfloat16", iters=3, warmup=2)
    assert row.skipped is None and row.iters == 3 and row.device.startswith("cuda")
    assert row.dtype == ("float16" if backend == "reference" else "bfloat16")
    for phase in ("forward", "backward", "step"):
        assert getattr(row, f"{phase}_ms") > 0
    assert row.peak_mem_mb > 0
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


def _activation(layout):
    """``[B, C, T, H, W]`` float32 with per-channel offsets, contiguous or channels_last_3d."""
    generator = torch.Generator("cuda").manual_seed(0)
    x = 2.0 * torch.randn(MEDIUM_SHAPE, device="cuda", generator=generator)
    x = x + torch.randn((1, MEDIUM_SHAPE[1], 1, 1, 1), device="cuda", generator=generator)
    return x.contiguous(memory_format=torch.channels_last_3d) if layout == "channels_last" else x


def _loss_and_grad(loss_fn, x, grad_output):
    leaf = x.detach().requires_grad_()
    loss = loss_fn(leaf)
    loss.backward(grad_output)
    return loss.detach(), leaf.grad


def _loss_pair(loss):
    """``(reference, kernel, to_input)`` for one loss, each taking the activation-derived input."""
    generator = torch.Generator("cuda").manual_seed(1)
    batch, channels = MEDIUM_SHAPE[:2]
    if loss == "priming":
        target = torch.randn((batch, channels), device="cuda", generator=generator)
        return (lambda tap: PRIMING_WEIGHT * tap_priming_loss_ref(tap, target, "jvs"),
                lambda tap: tap_priming_loss_triton(tap, target, PRIMING_WEIGHT),
                lambda x: x.flatten(3))  # [B, C, T, H*W]
    running_mean = torch.randn(channels, device="cuda", generator=generator)
    running_var = torch.rand(channels, device="cuda", generator=generator) + 0.5
    return (lambda a: bn_statistics_loss_ref(a, running_mean, running_var, True),
            lambda a: bn_statistics_loss_triton(a, running_mean, running_var),
            lambda x: x)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("loss", ["priming", "bn_stats"])
def test_low_precision_kernels_err_at_most_twice_torch(loss, layout, dtype):
    """Against the float32 reference on the float32 input, the kernel on the rounded input may err at
    most twice as much as torch's eager reference on that same rounded input."""
    reference, kernel, to_input = _loss_pair(loss)
    x32 = _activation(layout)
    x = x32.to(dtype)  # keeps the memory format
    grad_output = torch.rand(MEDIUM_SHAPE[0], device="cuda", generator=torch.Generator("cuda").manual_seed(2)) + 0.5
    expected = _loss_and_grad(reference, to_input(x32), grad_output)
    torch_at_dtype = _loss_and_grad(reference, to_input(x), grad_output)
    fused = _loss_and_grad(kernel, to_input(x), grad_output)
    assert fused[0].dtype == torch.float32 and fused[1].dtype == dtype
    assert fused[1].stride() == to_input(x).stride()
    for kernel_value, torch_value, want in zip(fused, torch_at_dtype, expected, strict=True):
        assert torch.isfinite(kernel_value).all() and kernel_value.abs().max() > 0  # not the all-zero failure
        scale = want.abs().max().item()
        kernel_error = (kernel_value.float() - want).abs().max().item()
        torch_error = (torch_value.float() - want).abs().max().item()
        assert kernel_error <= 2.0 * torch_error + 1e-5 * scale, (kernel_error, torch_error, scale)


def test_auto_checks_the_fused_losses_and_falls_back_to_compile(model, verifier, eager_run, monkeypatch):
    """A fused loss that disagrees with its reference on the run's own taps is dropped for the process."""
    monkeypatch.setattr(registry, "_triton_failure", None)
    monkeypatch.setattr(priming, "tap_priming_loss_triton",
                        lambda tap, target, weight: 1.1 * weight * tap_priming_loss_ref(tap, target, "jvs"))
    with pytest.warns(registry.KernelFallbackWarning, match="JVS priming"):
        result = _run(model, verifier, Acceleration(compile=True, kernels="auto", dtype="float32"))
    assert result.kernels == "compile" and "loss differs" in result.kernels_fallback
    _assert_same_losses(result, eager_run)
