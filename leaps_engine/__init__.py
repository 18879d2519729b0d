"""leaps-engine: LEAPS video model inversion (ICCV 2023), as a library and a CLI.

The public surface::

    from leaps_engine import create_adapter, synthesize, SynthesisConfig, Target

    model = create_adapter("embedded")                      # or "x3d_m", weights="kinetics400" / a path
    verifier = create_adapter("embedded_verifier")
    config = SynthesisConfig.from_preset("embedded", steps=300, seed=0)
    clip = generate_stimulus("moving right", seed=0)          # an embedded-domain stimulus [3, T, H, W]
    result = synthesize(model, [Target("moving right", stimulus=clip)], verifier=verifier, config=config)
    result.videos   # [B, 3, T, H, W] in [0, 1]

For the embedded models a ``Target`` without a stimulus gets a generated one (as on the command line).
The names are imported on first use, so importing the package (and the command line's help) needs no torch.

Speed settings (precision, channels-last, torch.compile, CUDA graphs, fused kernels) go in
``synthesize(..., acceleration=Acceleration(...))``; they never change the method.
"""

import importlib

# Public names and the modules that define them, imported on first use: `leaps-engine --help` and anything
# else that only needs the command line stays clear of torch.
_EXPORTS = {
    "PRESETS": "leaps_engine.config", "Acceleration": "leaps_engine.config", "Preset": "leaps_engine.config",
    "SynthesisConfig": "leaps_engine.config",
    "InputSpec": "leaps_engine.engine.adapters", "VideoAdapter": "leaps_engine.engine.adapters",
    "create_adapter": "leaps_engine.engine.adapters", "list_adapters": "leaps_engine.engine.adapters",
    "register_adapter": "leaps_engine.engine.adapters",
    "load_stimulus": "leaps_engine.engine.stimulus",
    "generate_stimulus": "leaps_engine.engine.embedded.generator",
    "ClipScore": "leaps_engine.engine.synthesis", "StepState": "leaps_engine.engine.synthesis",
    "SynthesisResult": "leaps_engine.engine.synthesis", "Target": "leaps_engine.engine.synthesis",
    "synthesize": "leaps_engine.engine.synthesis",
    "LeapsError": "leaps_engine.errors",
}


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'leaps_engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "PRESETS",
    "Acceleration",
    "ClipScore",
    "InputSpec",
    "LeapsError",
    "Preset",
    "StepState",
    "SynthesisConfig",
    "SynthesisResult",
    "Target",
    "VideoAdapter",
    "create_adapter",
    "generate_stimulus",
    "list_adapters",
    "load_stimulus",
    "register_adapter",
    "synthesize",
]
