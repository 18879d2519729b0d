"""Presets, overrides and the hook lifecycle of adapters."""

import pytest
import torch
from torch import nn

from leaps_engine import PRESETS, SynthesisConfig, create_adapter
from leaps_engine.engine.adapters import list_adapters
from leaps_engine.engine.adapters.base import record_inputs, record_outputs


def test_presets_carry_table_s1_values():
    config = SynthesisConfig.from_preset("x3d_m")
    assert (config.lambda_first, config.lambda_last, config.r) == (0.75, 0.1, 1e-3)
    assert (config.steps, config.size, config.lr, config.betas) == (2000, (8, 224, 224), 0.2, (0.5, 0.9))
    assert "Table S1, X3D-M" in config.preset_source
    assert SynthesisConfig.from_preset("slow_r50").r == 7.5e-3
    assert SynthesisConfig.from_preset("swin3d_b").lambda_first == 0.625


def test_every_registered_model_has_a_preset():
    assert set(list_adapters()) <= set(PRESETS)


def test_none_overrides_pass_through_and_unknown_fields_raise():
    config = SynthesisConfig.from_preset("embedded", steps=None, r=0.5, seed=None)
    assert config.steps == PRESETS["embedded"].steps and config.r == 0.5
    with pytest.raises(TypeError, match="unknown SynthesisConfig fields: stepz"):
        config.replace(stepz=3)


def test_hooks_are_removed_even_when_the_forward_fails():
    adapter = create_adapter("embedded", weights="random")
    modules = dict(adapter.model.named_modules())
    with pytest.raises(RuntimeError), record_outputs(adapter.model, adapter.taps):
        adapter.model(torch.zeros(1, 5, 8, 32, 32))  # wrong channel count
    assert all(not modules[tap]._forward_hooks for tap in adapter.taps)
    bn_layers = [m for m in adapter.model.modules() if isinstance(m, nn.BatchNorm3d)]
    with record_inputs(bn_layers) as inputs:
        adapter.model(torch.zeros(1, 3, 8, 32, 32))
    assert len(inputs) == len(bn_layers) and all(not m._forward_pre_hooks for m in bn_layers)


def test_adapters_stay_frozen_in_eval_mode():
    adapter = create_adapter("embedded")
    adapter.train()
    assert not adapter.training and not adapter.model.training
    assert not any(p.requires_grad for p in adapter.parameters())


def test_the_embedded_default_adds_the_measured_priors_and_paper_leaves_them_out():
    default = SynthesisConfig.from_preset("embedded")
    assert (default.parameterization, default.moving_layers, default.restarts, default.motion_sparsity) == (
        "layers", 2, 4, 0.15)
    assert (default.jitter, default.time_shift) == (0, 0)
    paper = SynthesisConfig.from_preset("embedded", paper=True)
    assert (paper.parameterization, paper.spatial_decay, paper.jitter, paper.time_shift) == ("pixel", 1.0, 0, 0)
    assert (paper.moving_layers, paper.restarts, paper.motion_sparsity) == (8, 1, 0.0)
    assert (paper.steps, paper.r, paper.lambda_first) == (default.steps, default.r, default.lambda_first)
    assert SynthesisConfig.from_preset("embedded", paper=True, jitter=1).jitter == 1  # options still apply
    assert SynthesisConfig.from_preset("embedded", parameterization="pixel").parameterization == "pixel"
    assert all(not PRESETS[name].settings for name in ("slow_r50", "x3d_m", "r2plus1d_18", "mvit_base_16x4"))
