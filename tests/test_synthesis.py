"""The synthesis loop on the embedded models: it optimises, it is reproducible, batching changes nothing."""

import os
import subprocess
import sys

import pytest
import torch

from leaps_engine import SynthesisConfig, Target, synthesize
from leaps_engine.engine.embedded.generator import CLASS_NAMES, generate_stimulus
from leaps_engine.engine.step import CoherenceWarning
from leaps_engine.engine.synthesis import resolve_class
from leaps_engine.errors import LeapsError


def _config(**overrides):
    return SynthesisConfig.from_preset("embedded", **overrides)


def test_loss_falls_and_target_probability_rises(model, verifier):
    target = Target(3, generate_stimulus(3, seed=11))
    # r = 1e-2 (the paper's grid) rather than the preset's 1e-6, so that R_feat has to fall too
    result = synthesize(model, [target], verifier=verifier, config=_config(steps=40, seed=5, r=1e-2))
    total = result.history["total"][:, 0]
    probability = result.history["target_prob"][:, 0]
    assert total[-5:].mean() < 0.5 * total[0]
    assert probability[0] < 0.2 and probability[-5:].min() > 0.9
    assert result.scores[0].model_target_prob > 0.5
    for term in ("ce", "priming", "coherence", "feature"):
        assert result.history[term].shape == (40, 1)
        assert torch.isfinite(result.history[term]).all()
    assert result.history["feature"][-1, 0] < result.history["feature"][0, 0]


def test_videos_are_valid_pixels_and_history_is_per_video(model, verifier):
    targets = [Target(0, generate_stimulus(0, seed=1)), Target(5, generate_stimulus(5, seed=2))]
    result = synthesize(model, targets, verifier=verifier, config=_config(steps=3))
    assert result.videos.shape == (2, 3, *_config().size)
    assert result.videos.min() >= 0 and result.videos.max() <= 1
    assert set(result.history) == {"total", "ce", "priming", "coherence", "feature", "prior", "target_prob"}
    assert all(values.shape == (3, 2) for values in result.history.values())
    assert [s.target_index for s in result.scores] == [0, 5]
    assert result.scores[1].target_class == CLASS_NAMES[5]
    assert len(result.scores[0].model_top5) == 5 and result.scores[0].verifier_top5 is not None


def test_same_seed_gives_identical_videos(model, verifier):
    target = Target(1, generate_stimulus(1, seed=4))
    first = synthesize(model, [target], verifier=verifier, config=_config(steps=5, seed=9))
    second = synthesize(model, [target], verifier=verifier, config=_config(steps=5, seed=9))
    other = synthesize(model, [target], verifier=verifier, config=_config(steps=5, seed=10))
    assert torch.equal(first.videos, second.videos)
    assert not torch.equal(first.videos, other.videos)


def test_batch_gives_the_same_videos_as_separate_runs(model, verifier):
    pairs = [(2, generate_stimulus(2, seed=21)), (7, generate_stimulus(7, seed=22)), (2, generate_stimulus(2, seed=23))]
    config = _config(steps=8, seed=100)
    batch = synthesize(model, [Target(c, s) for c, s in pairs], verifier=verifier, config=config)
    for index, (class_index, stimulus) in enumerate(pairs):
        alone = synthesize(model, [Target(class_index, stimulus, seed=100 + index)], verifier=verifier, config=config)
        torch.testing.assert_close(batch.videos[index], alone.videos[0], atol=1e-3, rtol=0)
        torch.testing.assert_close(batch.history["total"][:, index], alone.history["total"][:, 0], atol=1e-3, rtol=1e-3)


def test_callbacks_see_every_step(model):
    seen = []
    synthesize(model, [Target(0, generate_stimulus(0, seed=0))], config=_config(steps=4),
               callbacks=[lambda state: seen.append((state.step, state.videos().shape))])
    assert [step for step, _ in seen] == [1, 2, 3, 4]
    assert seen[0][1] == (1, 3, *_config().size)


def test_without_verifier_feature_term_is_zero(model):
    result = synthesize(model, [Target(0, generate_stimulus(0, seed=0))], verifier=None, config=_config(steps=2))
    assert torch.equal(result.history["feature"], torch.zeros(2, 1))
    assert result.scores[0].verifier_top5 is None


def test_multi_stimulus_priming_runs(model):
    stimuli = [generate_stimulus(4, seed=s) for s in range(3)]
    result = synthesize(model, [Target(4, stimuli)], config=_config(steps=2))
    assert result.videos.shape[0] == 1


def test_coherence_warning_when_no_tap_has_two_frames(model):
    with pytest.warns(CoherenceWarning, match="R_coh is 0"):
        result = synthesize(model, [Target(0, generate_stimulus(0, seed=0))], config=_config(steps=1, size=(1, 32, 32), parameterization="fourier"))
    assert torch.equal(result.history["coherence"], torch.zeros(1, 1))


def test_classes_resolve_by_name_or_index():
    names = ("moving right", "jumping jacks")
    assert resolve_class("Jumping_Jacks", names, "m") == 1
    assert resolve_class("0", names, "m") == 0
    with pytest.raises(LeapsError, match="did you mean: jumping jacks"):
        resolve_class("jumping jack", names, "m")
    with pytest.raises(LeapsError, match="out of range"):
        resolve_class(2, names, "m")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"steps": 0}, "steps must be >= 1"), ({"steps": -3}, "steps must be >= 1"),
     ({"size": (0, 32, 32)}, "size must be"), ({"priming_layers": 1.5}, "priming_layers"),
     ({"distance": "hamming"}, "unknown distance")],
)
def test_impossible_settings_raise(overrides, message):
    with pytest.raises(LeapsError, match=message):
        _config(**overrides)


@pytest.mark.parametrize("method", ["deepdream", "am"])
def test_baselines_need_no_stimulus_and_use_their_prior(model, verifier, method):
    # bouncing and approaching: classes the shipped classifier knows well (it is weak on rotations)
    config = _config(steps=15, method=method, parameterization="fourier")  # warp starts from a stimulus
    result = synthesize(model, [Target(8), Target(9)], verifier=verifier, config=config)
    assert result.stimuli == [None, None]
    assert torch.equal(result.history["priming"], torch.zeros(15, 2))
    assert torch.equal(result.history["feature"], torch.zeros(15, 2))
    assert (result.history["prior"] > 0).all()
    assert all(score.model_target_prob > 0.5 for score in result.scores)


@pytest.mark.parametrize(("objective", "has_coherence", "has_feature"), [
    ("prim", False, False), ("prim+coh", True, False), ("prim+feat", False, True), ("full", True, True)])
def test_objective_ablations_switch_terms(model, verifier, objective, has_coherence, has_feature):
    target = Target(1, generate_stimulus(1, seed=4))
    history = synthesize(model, [target], verifier=verifier, config=_config(steps=3, objective=objective)).history
    assert (history["priming"] > 0).all()
    assert bool((history["coherence"] > 0).all()) is has_coherence
    assert bool((history["feature"] > 0).all()) is has_feature
    expected = history["ce"] + history["priming"] + _config().r * (history["coherence"] + history["feature"])
    torch.testing.assert_close(history["total"], expected)


def test_leaps_without_a_stimulus_and_baseline_ablations_are_user_errors():
    from leaps_engine import create_adapter

    other = create_adapter("r3d_18", weights="random")  # a domain without a generator
    with pytest.raises(LeapsError, match="primes with a stimulus"):
        synthesize(other, [Target(0)], config=SynthesisConfig.from_preset("r3d_18", steps=1, size=(4, 32, 32)))
    with pytest.raises(LeapsError, match="does not apply to am"):
        _config(method="am", objective="prim")


def test_embedded_targets_without_a_stimulus_get_the_generated_one(model, verifier):
    generated = synthesize(model, [Target("moving right")], verifier=verifier, config=_config(steps=2, seed=5))
    given = synthesize(model, [Target(0, generate_stimulus("Moving_Right", seed=5))], verifier=verifier,
                       config=_config(steps=2, seed=5))
    assert torch.equal(generated.stimuli[0], given.stimuli[0]) and torch.equal(generated.videos, given.videos)
    with pytest.raises(ValueError, match="unknown class 'hopping'"):
        generate_stimulus("hopping", seed=0)


MEMORY_SCRIPT = """
import resource, sys
from leaps_engine import SynthesisConfig, Target, create_adapter, synthesize
from leaps_engine.engine.embedded.generator import generate_stimulus
model, verifier = create_adapter("embedded"), create_adapter("embedded_verifier")
config = SynthesisConfig.from_preset("embedded", steps=int(sys.argv[1]))
synthesize(model, [Target(0, generate_stimulus(0, seed=0))], verifier=verifier, config=config)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_peak_memory_does_not_grow_with_the_step_count():
    """Nothing is kept per step: the history is allocated once for the run (each step used to leave
    tensors behind, about 60 KB a step with the allocator's fragmentation)."""
    def peak_kib(steps: int) -> int:
        result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(steps)], capture_output=True, text=True,
                                timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, result.stderr[-2000:]
        return int(result.stdout.split()[-1])

    short, long = peak_kib(150), peak_kib(600)
    assert long - short < 8 * 1024, (short, long)


def test_term_gradients_are_measured_at_the_first_and_last_step(model, verifier):
    config = SynthesisConfig.from_preset("embedded", steps=3, r=1e-3)
    result = synthesize(model, [Target(0), Target(4)], verifier=verifier, config=config, measure_term_gradients=True)
    assert set(result.term_gradients) == {"first", "last"}
    for norms in result.term_gradients.values():
        assert all(norms[term].shape == (2,) for term in ("ce", "priming", "coherence", "feature", "prior"))
        assert (norms["ce"] > 0).all() and (norms["priming"] > 0).all() and (norms["feature"] > 0).all()
        assert (norms["prior"] == 0).all()  # LEAPS has no pixel prior
    plain = synthesize(model, [Target(0), Target(4)], verifier=verifier, config=config)
    assert plain.term_gradients == {}
    torch.testing.assert_close(plain.videos, result.videos)  # measuring does not change the run
