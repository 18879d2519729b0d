"""How the embedded networks hold up under pixel noise: held-out accuracy at several noise levels.

    python benchmarks/robustness.py [--per-class 50] [--out benchmarks/results/robustness_embedded.md]
    python benchmarks/robustness.py --weights-dir DIR --out ...   # DIR/classifier.pt and DIR/verifier.pt instead

The clips come from an unseen generator seed; each noise level adds independent Gaussian noise to every
pixel of every frame (std in [0, 1] pixel units, clamped to [0, 1]). Synthesized videos start from and
keep high-frequency noise, so a network that a few grey levels of noise sway cannot judge them.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from leaps_engine import create_adapter
from leaps_engine._io import atomic_path
from leaps_engine.engine.embedded.generator import CLASS_NAMES, generate_clips

NETWORKS = ("embedded", "embedded_verifier", "embedded_evaluator")
NOISE_STDS = (0.0, 0.01, 0.02, 0.05, 0.1)
SEED = 4242  # used neither by training (0, 20,000) nor by its held-out set (10,000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--out", default="benchmarks/results/robustness_embedded.md")
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="folder with classifier.pt and verifier.pt to measure instead of the shipped ones")
    args = parser.parse_args()
    weights = {"embedded": "classifier.pt", "embedded_verifier": "verifier.pt"}
    generator = torch.Generator().manual_seed(SEED)
    labels = torch.arange(len(CLASS_NAMES)).repeat(args.per_class)
    clips = generate_clips(labels, generator)
    noises = {std: torch.randn(clips.shape, generator=generator) * std for std in NOISE_STDS}
    lines = [(f"> command: `{shlex.join(['python', 'benchmarks/robustness.py', *sys.argv[1:]])}`; "
             f"{len(labels)} clips from generator seed {SEED}; torch {torch.__version__}"), "",
             "| network | " + " | ".join(f"noise std {std}" for std in NOISE_STDS) + " |",
             "|---|" + "---:|" * len(NOISE_STDS)]
    for name in NETWORKS:
        chosen = str(args.weights_dir / weights[name]) if args.weights_dir and name in weights else None
        adapter = create_adapter(name, weights=chosen)
        cells = []
        for std in NOISE_STDS:
            with torch.no_grad():
                noisy = (clips + noises[std]).clamp(0, 1)
                predictions = torch.cat([adapter(adapter.spec.normalize(part)).argmax(1) for part in noisy.split(200)])
            cells.append(f"{100 * (predictions == labels).float().mean().item():.1f}%")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    with atomic_path(Path(args.out)) as temporary:
        Path(temporary).write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
