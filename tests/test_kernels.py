"""The fused Triton losses against their pure-torch references (loss and input gradient).

Without CUDA the kernels run through Triton's interpreter (``TRITON_INTERPRET=1``, set in conftest.py)
on tiny shapes, float32 only: the bfloat16/float16 rows need a GPU. Gradients are taken with a
``grad_output`` that is not 1 (random positive weights of the ``[B]`` losses).
"""

import subprocess
import sys
import textwrap

import pytest
import torch

from leaps_engine.kernels import _triton, launch_plans
from leaps_engine.kernels.bn_stats import (
    bn_statistics_loss_ref,
    bn_statistics_loss_triton,
)
from leaps_engine.kernels.priming import tap_priming_loss_ref, tap_priming_loss_triton

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
needs_triton = pytest.mark.skipif(not _triton.TRITON_AVAILABLE, reason="the triton package is not installed")
GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs CUDA (the interpreter does no bf16/fp16 math)")]

# (B, C, T, N, layout); "permuted" is a [B, T, N, C] tensor viewed as [B, C, T, N] (channels fastest).
PRIMING_SHAPES = [
    (1, 1, 1, 1, "contiguous"),
    (3, 5, 3, 35, "contiguous"),  # 7 x 5 positions
    (1, 67, 1, 13, "contiguous"),  # 13 x 1
    (3, 24, 3, 35, "permuted"),
    (1, 5, 3, 455, "contiguous"),  # M = 1365: several tiles per chunk and several chunks
    (2, 67, 3, 91, "permuted"),  # the same along channels-fastest tiles
]
# (B, C, T, H, W, layout)
BN_SHAPES = [
    (1, 1, 1, 1, 1, "contiguous"),
    (3, 5, 3, 7, 5, "contiguous"),
    (1, 67, 1, 13, 1, "contiguous"),
    (3, 24, 3, 7, 5, "channels_last"),
    (1, 5, 3, 13, 35, "contiguous"),  # N = 1365: several tiles per chunk and several chunks
    (2, 67, 3, 13, 7, "channels_last"),
]
MULTI_CHUNK_PRIMING = PRIMING_SHAPES[4:]
MULTI_CHUNK_BN = BN_SHAPES[4:]
# (dtype, atol, rtol), relative to the largest reference value. float32: against the reference. Lower
# precisions: the kernel's error against the float32 reference is at most twice torch's own error at
# that dtype (the reference run on the same rounded input), plus atol + rtol as a floor.
DTYPES = [
    pytest.param(torch.float32, 1e-5, 1e-4, id="float32"),
    pytest.param(torch.bfloat16, 0.0, 2e-3, marks=GPU, id="bfloat16"),
    pytest.param(torch.float16, 0.0, 2e-4, marks=GPU, id="float16"),
]


def _priming_inputs(batch, channels, frames, positions, layout, dtype):
    """``(tap32, tap)``: the float32 tap and the same values at ``dtype``, both ``[B, C, T, N]``."""
    if layout == "permuted":
        stored = torch.randn(batch, frames, positions, channels, device=DEVICE)
        stored = stored + torch.randn(batch, 1, 1, channels, device=DEVICE)  # means well away from 0
        to_bctn = (0, 3, 1, 2)
    else:
        stored = torch.randn(batch, channels, frames, positions, device=DEVICE)
        stored = stored + torch.randn(batch, channels, 1, 1, device=DEVICE)
        to_bctn = (0, 1, 2, 3)
    return stored.permute(to_bctn), stored.to(dtype).permute(to_bctn)


def _bn_inputs(batch, channels, frames, height, width, layout, dtype):
    """``(activation32, activation)`` ``[B, C, T, H, W]``, contiguous or channels_last_3d."""
    x = 2.0 * torch.randn(batch, channels, frames, height, width, device=DEVICE)
    x = x + torch.randn(1, channels, 1, 1, 1, device=DEVICE)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last_3d)
    return x, x.to(dtype)


def _loss_and_grad(loss_fn, x, grad_weights):
    """``(loss [B], d (loss . grad_weights) / d x)`` detached."""
    x = x.detach().requires_grad_()
    loss = loss_fn(x)
    (grad,) = torch.autograd.grad((loss * grad_weights).sum(), x)
    return loss.detach(), grad


def _chunk_plan(x3):
    """``(num_chunks, tiles_per_chunk)`` stage 1 uses for ``x3`` ``[B, C, M]``."""
    batch, channels, length = x3.shape
    block_c, block_m = launch_plans.tile_shape(channels, x3.stride(1), x3.stride(2))
    return launch_plans.plan_chunks(length, block_m, batch * launch_plans.cdiv(channels, block_c))


def _assert_matches(actual, expected, torch_at_dtype, dtype, atol, rtol):
    """``actual`` against the float32 ``expected``; see ``DTYPES`` for the low-precision rule."""
    scale = expected.abs().max().item()
    if dtype == torch.float32:
        torch.testing.assert_close(actual, expected, atol=atol * scale, rtol=rtol)
        return
    kernel_error = (actual.float() - expected).abs().max().item()
    torch_error = (torch_at_dtype.float() - expected).abs().max().item()
    assert kernel_error <= 2.0 * torch_error + (atol + rtol) * scale, (kernel_error, torch_error)


def _assert_nontrivial(*tensors):
    for tensor in tensors:  # interpreter runs have returned all zeros
        assert tensor.abs().max().item() > 0.0
        assert torch.isfinite(tensor).all()


@needs_triton
@pytest.mark.parametrize(("dtype", "atol", "rtol"), DTYPES)
@pytest.mark.parametrize(("batch", "channels", "frames", "positions", "layout"), PRIMING_SHAPES)
def test_tap_priming_matches_reference(batch, channels, frames, positions, layout, dtype, atol, rtol):
    torch.manual_seed(0)
    tap32, tap = _priming_inputs(batch, channels, frames, positions, layout, dtype)
    target = torch.randn(batch, channels, device=DEVICE)
    grad_weights = torch.rand(batch, device=DEVICE) + 0.5
    weight = 0.7

    def reference(x):
        return weight * tap_priming_loss_ref(x, target, "jvs")

    loss, grad = _loss_and_grad(lambda x: tap_priming_loss_triton(x, target, weight), tap, grad_weights)
    expected_loss, expected_grad = _loss_and_grad(reference, tap32, grad_weights)
    torch_loss, torch_grad = _loss_and_grad(reference, tap, grad_weights)
    assert loss.shape == (batch,) and loss.dtype == torch.float32
    assert grad.shape == tap.shape and grad.dtype == dtype
    _assert_nontrivial(loss, grad)
    _assert_matches(loss, expected_loss, torch_loss, dtype, atol, rtol)
    _assert_matches(grad, expected_grad, torch_grad, dtype, atol, rtol)


@needs_triton
@pytest.mark.parametrize(("dtype", "atol", "rtol"), DTYPES)
@pytest.mark.parametrize(("batch", "channels", "frames", "height", "width", "layout"), BN_SHAPES)
def test_bn_statistics_matches_reference(batch, channels, frames, height, width, layout, dtype, atol, rtol):
    torch.manual_seed(0)
    x32, x = _bn_inputs(batch, channels, frames, height, width, layout, dtype)
    running_mean = torch.randn(channels, device=DEVICE)
    running_var = torch.rand(channels, device=DEVICE) + 0.5
    grad_weights = torch.rand(batch, device=DEVICE) + 0.5

    def reference(activation):
        return bn_statistics_loss_ref(activation, running_mean, running_var, per_video=True)

    loss, grad = _loss_and_grad(lambda a: bn_statistics_loss_triton(a, running_mean, running_var), x, grad_weights)
    expected_loss, expected_grad = _loss_and_grad(reference, x32, grad_weights)
    torch_loss, torch_grad = _loss_and_grad(reference, x, grad_weights)
    assert loss.shape == (batch,) and loss.dtype == torch.float32
    assert grad.shape == x.shape and grad.dtype == dtype and grad.stride() == x.stride()
    _assert_nontrivial(loss, grad)
    _assert_matches(loss, expected_loss, torch_loss, dtype, atol, rtol)
    _assert_matches(grad, expected_grad, torch_grad, dtype, atol, rtol)


def test_shape_tables_exercise_the_chunk_merges():
    for batch, channels, frames, positions, layout in MULTI_CHUNK_PRIMING:
        tap = _priming_inputs(batch, channels, frames, positions, layout, torch.float32)[0]
        num_chunks, tiles_per_chunk = _chunk_plan(tap.reshape(batch, channels, -1))
        assert num_chunks > 1 and tiles_per_chunk > 1
    for batch, channels, frames, height, width, layout in MULTI_CHUNK_BN:
        x = _bn_inputs(batch, channels, frames, height, width, layout, torch.float32)[0]
        num_chunks, tiles_per_chunk = _chunk_plan(x.flatten(2))
        assert num_chunks > 1 and tiles_per_chunk > 1


@needs_triton
def test_bn_statistics_stable_under_a_large_offset():
    """``E[x^2] - E[x]^2`` in float32 would be off by ~0.06 here; the variance is ~0.01."""
    torch.manual_seed(0)
    x = 1e3 + 0.1 * torch.randn(1, 5, 3, 13, 35, device=DEVICE)
    running_mean, running_var = torch.zeros(5, device=DEVICE), torch.zeros(5, device=DEVICE)
    _, mean, var, _, _ = torch.ops.leaps_engine.bn_statistics_loss(x, running_mean, running_var)
    x64 = x.double().flatten(2)
    torch.testing.assert_close(var.double(), x64.var(dim=2, unbiased=False), rtol=1e-4, atol=0.0)
    torch.testing.assert_close(mean.double(), x64.mean(dim=2), rtol=1e-6, atol=0.0)


@needs_triton
def test_bn_statistics_zero_norm_gives_finite_gradients():
    """Channels held at exactly representable constants: mu == running mean and var == 0 exactly."""
    levels = 0.5 * torch.arange(6, device=DEVICE, dtype=torch.float32)
    x = levels[None, :, None, None, None].expand(2, 6, 3, 7, 5).contiguous()
    grad_weights = torch.tensor([0.5, 2.0], device=DEVICE)
    for running_var, expected in ((torch.zeros(6, device=DEVICE), 0.0), (torch.ones(6, device=DEVICE), 6**0.5)):
        loss, grad = _loss_and_grad(
            lambda a, v=running_var: bn_statistics_loss_triton(a, levels, v), x, grad_weights
        )
        reference = _loss_and_grad(lambda a, v=running_var: bn_statistics_loss_ref(a, levels, v), x, grad_weights)
        expected_grad = reference[1]
        torch.testing.assert_close(loss, torch.full((2,), expected, device=DEVICE))
        assert torch.isfinite(grad).all()
        torch.testing.assert_close(grad, expected_grad)


@needs_triton
def test_bn_backward_op_keeps_dtype_and_channels_last():
    x = _bn_inputs(2, 5, 3, 7, 5, "channels_last", torch.float32)[0]
    mean, dmu, dvar = (torch.randn(2, 5, device=DEVICE) for _ in range(3))
    grad = torch.ops.leaps_engine.bn_statistics_loss_backward(x, mean, dmu, dvar, torch.rand(2, device=DEVICE))
    assert grad.is_contiguous(memory_format=torch.channels_last_3d) and grad.dtype == x.dtype
    _assert_nontrivial(grad)


@needs_triton
def test_ops_are_registered():
    for name in ("tap_priming_loss", "bn_statistics_loss", "bn_statistics_loss_backward"):
        assert hasattr(torch.ops.leaps_engine, name)


def _opcheck_cases():
    x = torch.randn(2, 5, 3, 7, 5, device=DEVICE)
    tap, target = torch.randn(2, 5, 3, 9, device=DEVICE), torch.randn(2, 5, device=DEVICE)
    running_mean, running_var = torch.randn(5, device=DEVICE), torch.rand(5, device=DEVICE)
    statistics = [torch.randn(2, 5, device=DEVICE) for _ in range(3)]
    return [
        ("tap_priming_loss", (tap.requires_grad_(), target, 0.5)),
        ("bn_statistics_loss", (x.clone().requires_grad_(), running_mean, running_var)),
        ("bn_statistics_loss_backward", (x, *statistics, torch.rand(2, device=DEVICE))),
    ]


@needs_triton
def test_opcheck_schema_and_autograd_registration():
    for name, args in _opcheck_cases():
        torch.library.opcheck(
            getattr(torch.ops.leaps_engine, name), args, test_utils=("test_schema", "test_autograd_registration")
        )


@needs_triton
@pytest.mark.gpu
@pytest.mark.skipif(
    not CUDA,
    reason="opcheck's fake-tensor and AOT checks run the op body on fake tensors; under TRITON_INTERPRET "
    "wrap_triton returns the interpreter's kernel, which then reads their (missing) data",
)
def test_opcheck_fake_tensor_and_aot_dispatch():
    for name, args in _opcheck_cases():
        torch.library.opcheck(getattr(torch.ops.leaps_engine, name), args)


def test_entry_points_without_triton_raise(monkeypatch):
    monkeypatch.setattr(_triton, "TRITON_AVAILABLE", False)
    with pytest.raises(RuntimeError, match="needs the `triton` package"):
        tap_priming_loss_triton(torch.ones(1, 2, 1, 1), torch.ones(1, 2), 1.0)
    with pytest.raises(RuntimeError, match="needs the `triton` package"):
        bn_statistics_loss_triton(torch.ones(1, 2, 1, 1, 1), torch.ones(2), torch.ones(2))


@pytest.mark.skipif(not _triton.TRITON_AVAILABLE, reason="the triton package is not installed")
def test_cpu_tensors_without_the_interpreter_raise(monkeypatch):
    monkeypatch.setattr(_triton, "INTERPRETED", False)  # as for compiled kernels
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        _triton.require_triton("some_loss_triton", torch.ones(1))


def test_import_and_references_work_without_triton():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["triton"] = None  # import triton -> ImportError, as on CPU-only wheels
        import torch
        import leaps_engine
        from leaps_engine.kernels import bn_stats, priming, triton_kernels
        assert not triton_kernels.TRITON_AVAILABLE
        tap, target = torch.rand(2, 3, 2, 4), torch.rand(2, 3)
        assert priming.tap_priming_loss_ref(tap, target).shape == (2,)
        assert bn_stats.bn_statistics_loss_ref(tap, torch.zeros(3), torch.ones(3)).shape == (2,)
        try:
            priming.tap_priming_loss_triton(tap, target, 1.0)
        except RuntimeError as error:
            assert "triton" in str(error)
        else:
            raise AssertionError("expected a RuntimeError")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ---- low precision on a CUDA device, against torch's own eager math (`pytest -m gpu`) ----------------------
# (B, C, T, H, W): odd, not powers of two, several chunks per video in both kernels' stage 1.
MEDIUM_SHAPE = (3, 96, 5, 23, 29)
PRIMING_WEIGHT = 0.7


def _medium_activation(layout):
    """``[B, C, T, H, W]`` float32 with per-channel offsets, contiguous or channels_last_3d."""
    generator = torch.Generator("cuda").manual_seed(0)
    x = 2.0 * torch.randn(MEDIUM_SHAPE, device="cuda", generator=generator)
    x = x + torch.randn((1, MEDIUM_SHAPE[1], 1, 1, 1), device="cuda", generator=generator)
    return x.contiguous(memory_format=torch.channels_last_3d) if layout == "channels_last" else x


def _loss_and_leaf_grad(loss_fn, x, grad_output):
    """``(loss [B], x.grad)`` after ``loss.backward(grad_output)`` on a leaf copy of ``x``."""
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


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("loss", ["priming", "bn_stats"])
def test_low_precision_kernels_err_at_most_twice_torch(loss, layout, dtype):
    """Against the float32 reference on the float32 input, the kernel on the rounded input may err at
    most twice as much as torch's eager reference on that same rounded input."""
    reference, kernel, to_input = _loss_pair(loss)
    x32 = _medium_activation(layout)
    x = x32.to(dtype)  # keeps the memory format
    grad_output = torch.rand(MEDIUM_SHAPE[0], device="cuda", generator=torch.Generator("cuda").manual_seed(2)) + 0.5
    expected = _loss_and_leaf_grad(reference, to_input(x32), grad_output)
    torch_at_dtype = _loss_and_leaf_grad(reference, to_input(x), grad_output)
    fused = _loss_and_leaf_grad(kernel, to_input(x), grad_output)
    assert fused[0].dtype == torch.float32 and fused[1].dtype == dtype
    assert fused[1].stride() == to_input(x).stride()
    for kernel_value, torch_value, want in zip(fused, torch_at_dtype, expected, strict=True):
        assert torch.isfinite(kernel_value).all() and kernel_value.abs().max() > 0  # not the all-zero failure
        scale = want.abs().max().item()
        kernel_error = (kernel_value.float() - want).abs().max().item()
        torch_error = (torch_value.float() - want).abs().max().item()
        assert kernel_error <= 2.0 * torch_error + 1e-5 * scale, (kernel_error, torch_error, scale)
