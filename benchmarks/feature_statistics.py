"""R_feat of real clips and of synthesized videos on the embedded domain: why the paper's r hurts here.

    python benchmarks/feature_statistics.py [--out benchmarks/results/feature_statistics_embedded.md]

R_feat (paper Eq. 3) sums, over the verifier's BatchNorm layers, the distance between a video's input
statistics and the layer's running statistics. This prints it for generated clips of every class (real
data, which the verifier classifies correctly) and for LEAPS videos of the same classes synthesized at
several r, per video (the engine's default) and over the batch (DeepInversion), with the verifier's
top-1 on each set. If optimisation drives R_feat far below what real clips have, the videos are "more
average" than any real clip, and the verifier stops recognising them.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from leaps_engine import SynthesisConfig, Target, create_adapter, synthesize
from leaps_engine._io import atomic_path
from leaps_engine.engine.embedded.generator import CLASS_NAMES, generate_stimulus
from leaps_engine.engine.objectives import feature_statistics_loss
from leaps_engine.engine.step import verifier_bn_layers

SEED = 1000  # the stimuli of the first quality.py stimulus set
R_VALUES = (1e-6, 1e-4, 1e-2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/feature_statistics_embedded.md")
    args = parser.parse_args()
    model, verifier = create_adapter("embedded"), create_adapter("embedded_verifier")
    labels = torch.arange(len(CLASS_NAMES))
    clips = torch.stack([generate_stimulus(int(label), seed=SEED + int(label)) for label in labels])
    rows = [("generated clips (real data)", *_statistics(verifier, clips, labels))]
    targets = [Target(int(label), clips[label]) for label in labels]
    for r in R_VALUES:
        result = synthesize(model, targets, verifier=verifier, config=SynthesisConfig.from_preset("embedded", r=r,
                                                                                                   seed=SEED))
        rows.append((f"LEAPS, r = {r:g}", *_statistics(verifier, result.videos, labels)))
    lines = [
        (f"> command: `{shlex.join(['python', 'benchmarks/feature_statistics.py', *sys.argv[1:]])}`; shipped "
         f"networks, {len(labels)} classes, stimuli seed {SEED}, preset otherwise; torch {torch.__version__}"),
        "",
        "| videos | R_feat per video (mean) | R_feat over the batch | verifier top-1 |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {per_video:.1f} | {batch:.1f} | {top1:.1f}% |" for name, per_video, batch, top1 in rows],
        "",
    ]
    with atomic_path(Path(args.out)) as temporary:
        Path(temporary).write_text("\n".join(lines))
    print("\n".join(lines))


@torch.no_grad()
def _statistics(verifier, videos: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float]:
    """R_feat per video (mean over videos) and over the batch of pixel ``videos`` [B, 3, T, H, W], and top-1."""
    recorded = []
    hooks = [layer.register_forward_pre_hook(lambda module, inputs: recorded.append((module, inputs[0])))
             for layer in verifier_bn_layers(verifier)]
    try:
        logits = verifier(verifier.spec.normalize(videos))
    finally:
        for hook in hooks:
            hook.remove()
    per_video = feature_statistics_loss(recorded, per_video=True).mean().item()
    batch = feature_statistics_loss(recorded, per_video=False).mean().item()
    return per_video, batch, 100 * (logits.argmax(1) == labels).float().mean().item()


if __name__ == "__main__":
    main()
