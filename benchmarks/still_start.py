"""What the embedded networks read from the warp parameterisation's start: a stimulus's first frame held still.

    python benchmarks/still_start.py [--per-class 50] [--out benchmarks/results/still_start_embedded.md]

Under ``--parameterization warp`` x* starts as the first frame of its stimulus, repeated over the clip
(plus velocities of 0.1 pixel per frame). That frame is not free of class: a pair class shows two actors,
growing starts small and shrinking large, a translation starts upstream of its path. This measures how
much of the class the networks take from it: top-1 of every network on the first frames held still,
beside the same clips moving, on the stimuli of the quality benchmark (seeds 1000, 2000, 3000 + class
index: ``benchmarks/quality.py``) and on ``--per-class`` clips per class from an unseen generator seed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from leaps_engine import create_adapter
from leaps_engine._io import atomic_path
from leaps_engine.engine.embedded.generator import CLASS_NAMES, generate_stimulus
from leaps_engine.engine.embedded.train import held_out_set

NETWORKS = ("embedded", "embedded_verifier", "embedded_evaluator")
QUALITY_SEEDS = (1000, 2000, 3000)  # quality.py's stimulus sets: seed + class index
SEED = 4343  # used by neither training (0, 20,000), its held-out set (10,000), robustness.py nor motion_figure.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--out", default="benchmarks/results/still_start_embedded.md")
    args = parser.parse_args()
    classes = torch.arange(len(CLASS_NAMES))
    quality_clips = torch.stack([generate_stimulus(int(c), seed=seed + int(c))
                                 for seed in QUALITY_SEEDS for c in classes])
    unseen_clips, unseen_labels = held_out_set(SEED, args.per_class)
    quality_labels = classes.repeat(len(QUALITY_SEEDS))
    sets = {f"the quality benchmark's {len(quality_clips)} stimuli": (quality_clips, quality_labels),
            f"{len(unseen_labels)} clips, generator seed {SEED}": (unseen_clips, unseen_labels)}
    lines = [(f"> command: `{shlex.join(['python', 'benchmarks/still_start.py', *sys.argv[1:]])}`; shipped networks; "
              f"torch {torch.__version__}"), "",
             "Top-1 in percent on the clips held still at their first frame (the warp start) and moving (the clips "
             "themselves); chance is 8.3%. The still frames' most frequent top-1 classes, in brackets.", "",
             "| network | clips | still first frame | moving clip |", "|---|---|---:|---:|"]
    for name in NETWORKS:
        adapter = create_adapter(name)
        for set_name, (clips, labels) in sets.items():
            still = clips[:, :, :1].expand_as(clips)
            still_top1, moving_top1 = (_top1(adapter, videos) for videos in (still, clips))
            counts = torch.bincount(still_top1, minlength=len(CLASS_NAMES))
            common = ", ".join(f"{CLASS_NAMES[i]} {100 * counts[i].item() / len(labels):.0f}%"
                               for i in counts.argsort(descending=True)[:2].tolist())
            lines.append(f"| {name} | {set_name} | {_percent(still_top1, labels)} ({common}) | "
                         f"{_percent(moving_top1, labels)} |")
    text = "\n".join(lines) + "\n"
    with atomic_path(Path(args.out)) as temporary:
        Path(temporary).write_text(text)
    print(text, end="")


def _top1(adapter, videos: torch.Tensor) -> torch.Tensor:
    """Top-1 class ``[N]`` of pixel videos ``[N, 3, T, H, W]`` in [0, 1]."""
    with torch.no_grad():
        return torch.cat([adapter(adapter.spec.normalize(part)).argmax(1) for part in videos.split(200)])


def _percent(predictions: torch.Tensor, labels: torch.Tensor) -> str:
    return f"{100 * (predictions == labels).float().mean().item():.1f}%"


if __name__ == "__main__":
    main()
