"""``--kernels auto`` on CUDA protects the user: the first call of each fused loss for each new input is
checked against the reference (value and input gradient), and a failure warns once and hands every
later call to the fallback, recorded for result.json.

On the CPU ``auto`` is eager, so these tests build the checked kernels directly (the fused losses run
through Triton's interpreter) and break a fused loss on purpose.
"""

import warnings

import pytest
import torch

from leaps_engine import SynthesisConfig, Target, synthesize
from leaps_engine.config import Acceleration
from leaps_engine.engine import step as step_module
from leaps_engine.engine.embedded.generator import generate_stimulus
from leaps_engine.kernels import bn_stats, priming, registry
from leaps_engine.kernels.triton_kernels import TRITON_AVAILABLE

pytestmark = pytest.mark.skipif(not TRITON_AVAILABLE, reason="the triton package is not installed")


@pytest.fixture(autouse=True)
def fresh_record(monkeypatch):
    """Each test starts with no fallback recorded (the record is per process)."""
    monkeypatch.setattr(registry, "_triton_failure", None)


def _tap_and_target():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 6, 3, 10, generator=generator), torch.randn(2, 6, generator=generator)


def _bn_input():
    generator = torch.Generator().manual_seed(1)
    return (torch.randn(2, 5, 2, 3, 4, generator=generator), torch.randn(5, generator=generator),
            torch.rand(5, generator=generator) + 0.5)


def _wrong_priming(tap, target, weight):
    return 1.1 * weight * priming.tap_priming_loss_ref(tap, target, "jvs")


def test_correct_fused_losses_are_checked_once_per_input_and_kept(monkeypatch):
    checks = []
    original = registry.first_use_problem
    monkeypatch.setattr(registry, "first_use_problem", lambda *args: checks.append(args[2].shape) or original(*args))
    kernels = registry.checked_triton_kernels(registry.EAGER_KERNELS)
    tap, target = _tap_and_target()
    activation, mean, var = _bn_input()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            loss = kernels.tap_priming(tap, target, 0.7, "jvs")
            kernels.bn_statistics(activation, mean, var, True)
        kernels.tap_priming(tap[:1], target[:1], 0.7, "jvs")  # a new shape: checked again
    expected = 0.7 * priming.tap_priming_loss_ref(tap, target, "jvs")
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert checks == [tap.shape, activation.shape, tap[:1].shape]
    assert kernels.in_use() == ("triton", None) and registry.triton_fallback_reason() is None


def test_a_wrong_fused_loss_falls_back_with_one_warning_for_the_process(monkeypatch):
    monkeypatch.setattr(priming, "tap_priming_loss_triton", _wrong_priming)
    kernels = registry.checked_triton_kernels(registry.EAGER_KERNELS)
    tap, target = _tap_and_target()
    activation, mean, var = _bn_input()
    with pytest.warns(registry.KernelFallbackWarning, match="JVS priming on \\[2, 6, 3, 10\\] float32: loss differs"):
        loss = kernels.tap_priming(tap, target, 0.7, "jvs")
    torch.testing.assert_close(loss, 0.7 * priming.tap_priming_loss_ref(tap, target, "jvs"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, and BN statistics go to the fallback unchecked
        kernels.bn_statistics(activation, mean, var, True)
        later = registry.checked_triton_kernels(registry.EAGER_KERNELS)  # the record holds for the process
        later.tap_priming(tap, target, 0.7, "jvs")
    backend, reason = kernels.in_use()
    assert backend == "eager" and "loss differs from the reference" in reason
    assert later.in_use() == (backend, reason) == ("eager", registry.triton_fallback_reason())


def test_a_fused_loss_that_raises_falls_back_and_says_why(monkeypatch):
    def broken(activation, running_mean, running_var):
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    monkeypatch.setattr(bn_stats, "bn_statistics_loss_triton", broken)
    kernels = registry.checked_triton_kernels(registry.EAGER_KERNELS)
    activation, mean, var = _bn_input()
    with pytest.warns(registry.KernelFallbackWarning, match="RuntimeError: CUDA error: no kernel image"):
        loss = kernels.bn_statistics(activation, mean, var, True)
    torch.testing.assert_close(loss, bn_stats.bn_statistics_loss_ref(activation, mean, var, True))


def test_a_wrong_gradient_is_caught_too(monkeypatch):
    class ScaledGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return 3.0 * grad

    monkeypatch.setattr(priming, "tap_priming_loss_triton",
                        lambda tap, target, weight: weight * priming.tap_priming_loss_ref(ScaledGradient.apply(tap), target))
    kernels = registry.checked_triton_kernels(registry.EAGER_KERNELS)
    tap, target = _tap_and_target()
    with pytest.warns(registry.KernelFallbackWarning, match="input gradient differs"):
        kernels.tap_priming(tap, target, 0.7, "jvs")


def _synthesize(model, verifier, acceleration):
    config = SynthesisConfig.from_preset("embedded", size=(4, 16, 16), steps=3)
    return synthesize(model, [Target(2, generate_stimulus(2, seed=1))], verifier=verifier, config=config,
                      acceleration=acceleration)


def test_a_compiled_step_checks_eagerly_first_and_records_the_fallback(model, verifier, monkeypatch):
    """auto as on CUDA (checked kernels), compiled step: the eager first pass finds the wrong loss before
    tracing, so the compiled step runs the fallback and the run says why."""
    monkeypatch.setattr(priming, "tap_priming_loss_triton", _wrong_priming)
    monkeypatch.setattr(step_module, "select_kernels",
                        lambda choice, device: registry.checked_triton_kernels(registry.EAGER_KERNELS))
    torch.compiler.reset()
    with pytest.warns(registry.KernelFallbackWarning):
        result = _synthesize(model, verifier, Acceleration(compile=True, kernels="auto", dtype="float32"))
    monkeypatch.undo()
    expected = _synthesize(model, verifier, Acceleration(kernels="eager", dtype="float32"))
    assert result.kernels == "eager" and "JVS priming" in result.kernels_fallback
    for term in ("total", "priming", "feature"):
        torch.testing.assert_close(result.history[term], expected.history[term], rtol=1e-4, atol=1e-5)


def test_an_explicit_triton_choice_is_never_replaced(model, verifier, monkeypatch):
    def broken(tap, target, weight):
        raise RuntimeError("kernel failed")

    monkeypatch.setattr(priming, "tap_priming_loss_triton", broken)
    with pytest.raises(RuntimeError, match="kernel failed"):
        _synthesize(model, verifier, Acceleration(kernels="triton", dtype="float32"))
    assert registry.triton_fallback_reason() is None
