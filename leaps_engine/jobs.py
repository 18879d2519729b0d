"""From the user's strings to what the engine takes: the device, the targets (class + stimuli) and the
verifier. Shared by the command line, tuning and sweeps; writes nothing and prints nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from leaps_engine._io import hold_point
from leaps_engine.config import SynthesisConfig, preset_for
from leaps_engine.engine.adapters import VideoAdapter, create_adapter, get_adapter_entry
from leaps_engine.engine.adapters.weights import RANDOM_WEIGHTS
from leaps_engine.engine.stimulus import expand_stimulus
from leaps_engine.engine.synthesis import StepState, Target, resolve_class
from leaps_engine.errors import LeapsError


def check_device(device: str) -> torch.device:
    """``device`` (``cpu``, ``cuda``, ``cuda:N``) as a torch device. Raises :class:`LeapsError` for an
    unknown name, or CUDA asked for where it is not available."""
    try:
        torch_device = torch.device(device)
    except RuntimeError:
        raise LeapsError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise LeapsError(f"device {device!r} asked for, but CUDA is not available here")
    return torch_device


def prepare_out_dir(out: Path) -> None:
    """Create the output folder and check it is writable before any work starts."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise LeapsError(f"output folder {out} cannot be written ({error.strerror or error})") from None


def build_targets(
    model_name: str, class_names: tuple[str, ...], classes: tuple[str, ...], stimuli: tuple[str, ...], seed: int,
    config: SynthesisConfig,
) -> tuple[list[Target], list[str | None]]:
    """Pair each --class with its stimuli (generated ones for models that make their own: the embedded ones).

    One --class with several --stimulus values primes with all of them together; a --stimulus folder
    of videos does the same for its class. The baselines need no stimulus, except under the warp or layers
    parameterisation.
    """
    stimulus_source = get_adapter_entry(model_name).stimulus_source
    if not classes:
        if stimulus_source is None:
            raise LeapsError(f"--class is required for {model_name} (see `leaps-engine classes {model_name}`)")
        classes = (class_names[0],)
    indices = [resolve_class(label, class_names, model_name) for label in classes]
    if not stimuli:
        if not config.uses_stimulus:
            return [Target(i) for i in indices], [None] * len(indices)
        if stimulus_source is None:
            raise LeapsError(f"--stimulus is required for {model_name}: give one video of each --class")
        targets = [Target(i, stimulus_source(i, seed + k)) for k, i in enumerate(indices)]
        return targets, [f"generated (class {i}, seed {seed + k})" for k, i in enumerate(indices)]
    if len(indices) == 1:
        groups = [[clip for value in stimuli for clip in expand_stimulus(value)]]
    elif len(stimuli) == len(indices):
        groups = [expand_stimulus(value) for value in stimuli]
    else:
        raise LeapsError(f"give one --stimulus per --class, or several for a single --class (got {len(indices)} "
                         f"classes and {len(stimuli)} stimuli)")
    targets = [Target(i, [str(p) for p in group] if len(group) > 1 else str(group[0]))
               for i, group in zip(indices, groups, strict=True)]
    return targets, [" + ".join(str(p) for p in group) for group in groups]


def build_verifier(
    model: VideoAdapter, verifier_name: str | None, verifier_weights: str | None, device: torch.device,
) -> tuple[VideoAdapter | None, str | None]:
    """The verifier and its weights: the preset's unless named; 'none' disables R_feat. Its weights default
    to the model's kind (``"random"`` after a random model, else its pretrained ones). The model itself
    (same name and weights, not random) is reused, so one forward pass serves both."""
    name = verifier_name or preset_for(model.name).verifier
    if name is None or name.lower() == "none":
        return None, None
    entry = get_adapter_entry(name)
    if verifier_weights is None:
        verifier_weights = RANDOM_WEIGHTS if model.weights == RANDOM_WEIGHTS else entry.pretrained
    if name == model.name and verifier_weights == model.weights != RANDOM_WEIGHTS:
        return model, verifier_weights
    try:
        return create_adapter(name, weights=verifier_weights, device=device), verifier_weights
    except LeapsError as error:  # the model loaded: say that this is about the verifier, and what to do
        raise LeapsError(f"the verifier {name} (R_feat) could not be built: {error}; give it weights with "
                         "--verifier-weights PATH|random, another one with --verifier NAME, or drop R_feat "
                         "with --verifier none") from None


def hold_while_optimising(state: StepState) -> None:
    """A synthesis callback: the ``optimise`` hold point (:func:`leaps_engine._io.hold_point`) at step 1."""
    if state.step == 1:
        hold_point("optimise")
