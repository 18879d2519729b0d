"""Helpers shared by the test modules (fixtures are in ``conftest.py``)."""

import torch

from leaps_engine import SynthesisConfig, Target, synthesize
from leaps_engine.engine.embedded.generator import generate_stimulus


def short_synthesis(model, verifier, acceleration, *, steps, size=None):
    """A short run of the embedded preset on class 2 with its generated stimulus (seed 1): one video."""
    frames_size = {} if size is None else {"size": size[1]}
    target = Target(2, generate_stimulus(2, seed=1, **frames_size))
    config = SynthesisConfig.from_preset("embedded", steps=steps, **({} if size is None else {"size": size}))
    return synthesize(model, [target], verifier=verifier, config=config, acceleration=acceleration)


def assert_same_losses(result, expected, terms, rtol=1e-4, atol=1e-5, float32=False):
    """Every term's per-step history of ``result`` is close to ``expected``'s (and float32, if asked)."""
    for term in terms:
        if float32:
            assert result.history[term].dtype == torch.float32
        torch.testing.assert_close(result.history[term], expected.history[term], rtol=rtol, atol=atol)
