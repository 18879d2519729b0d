"""leaps-engine: LEAPS video model inversion (ICCV 2023), as a library and a CLI.

The public surface::

    from leaps_engine import create_adapter, synthesize, SynthesisConfig, Target

    model = create_adapter("embedded")                      # or "x3d_m", weights="kinetics400" / a path
    verifier = create_adapter("embedded_verifier")
    config = SynthesisConfig.from_preset("embedded", steps=300, seed=0)
    result = synthesize(model, [Target("moving right", stimulus=clip)], verifier=verifier, config=config)
    result.videos   # [B, 3, T, H, W] in [0, 1]

Speed settings (precision, channels-last, torch.compile, CUDA graphs, fused kernels) go in
``synthesize(..., acceleration=Acceleration(...))``; they never change the method.
"""

from leaps_engine.config import PRESETS, Acceleration, Preset, SynthesisConfig
from leaps_engine.engine.adapters import InputSpec, VideoAdapter, create_adapter, list_adapters, register_adapter
from leaps_engine.engine.stimulus import load_stimulus
from leaps_engine.engine.synthesis import ClipScore, StepState, SynthesisResult, Target, synthesize
from leaps_engine.errors import LeapsError

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
    "list_adapters",
    "load_stimulus",
    "register_adapter",
    "synthesize",
]
