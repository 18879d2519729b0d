"""Validate the motion figure on real clips: how similar the motion signatures of two independent clips of
the same class are, against clips of other classes.

    python benchmarks/motion_figure.py [--per-class 20] [--out benchmarks/results/motion_figure_real_clips.md]

For each class, ``--per-class`` pairs of generated clips (unseen generator seed, the embedded domain's
default camera) are compared: each clip with its partner of the same class ("same class"), and each with
every clip of the first pair of every other class ("other classes"). Reported: the mean motion similarity
(:func:`leaps_engine.engine.motion.motion_similarity`, a cosine in [-1, 1]) and the share of comparisons at
or above :data:`MATCH_THRESHOLD`, the threshold ``evaluate`` uses to call a class's motion matched.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import numpy as np
import torch

from leaps_engine._io import atomic_path
from leaps_engine.engine.embedded.generator import CAMERA_SPEED, CLASS_NAMES, generate_clips
from leaps_engine.engine.motion import motion_signature, signature_similarity
from leaps_engine.evaluation import MOTION_MATCH_THRESHOLD as MATCH_THRESHOLD

SEED = 7331  # used neither by training (0, 20,000), its held-out set (10,000) nor robustness.py (4242)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/motion_figure_real_clips.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    labels = torch.arange(len(CLASS_NAMES)).repeat(2 * args.per_class)
    clips = generate_clips(labels, torch.Generator().manual_seed(SEED))
    signatures = np.stack([motion_signature(clip) for clip in clips])
    labels = labels.numpy()
    lines = [f"> command: {shlex.join(['python', *sys.argv])}  ",
             f"> {args.per_class} pairs of clips per class, generator seed {SEED}, camera speed {CAMERA_SPEED}, "
             f"8x32x32; match threshold {MATCH_THRESHOLD}", "",
             "| class | same class: mean similarity | same class: share matched | other classes: mean | "
             "other classes: share matched |", "|---|---:|---:|---:|---:|"]
    matched = 0
    for index, name in enumerate(CLASS_NAMES):
        own = np.flatnonzero(labels == index)
        first, second = own[: args.per_class], own[args.per_class :]
        others = np.flatnonzero(labels != index)[: args.per_class * (len(CLASS_NAMES) - 1)]
        pairs = zip(first, second, strict=True)
        same = np.array([signature_similarity(signatures[i], signatures[j]) for i, j in pairs])
        other = np.array([signature_similarity(signatures[i], signatures[j]) for i in first for j in others])
        matched += np.nanmean(same) >= MATCH_THRESHOLD
        lines.append(f"| {name} | {np.nanmean(same):.2f} | {np.mean(same >= MATCH_THRESHOLD):.2f} | "
                     f"{np.nanmean(other):.2f} | {np.mean(other >= MATCH_THRESHOLD):.2f} |")
    lines += ["", f"Classes whose same-class mean reaches the threshold: {matched} of {len(CLASS_NAMES)}."]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    with atomic_path(args.out) as temporary:
        temporary.write_text(text)


if __name__ == "__main__":
    main()
