"""Train the embedded classifier, verifier and evaluator from a seed on freshly generated clips.

    python -m leaps_engine.engine.embedded.train --seed 0 --out DIR                    # all three, clean clips
    python -m leaps_engine.engine.embedded.train --seed 0 --out DIR --only evaluator   # one network
    python -m leaps_engine.engine.embedded.train --seed 0 --out DIR --camera-speed 0.1 # a panning camera

The shipped weights (``leaps_engine/engine/embedded/weights``) are the evaluator of ``--only evaluator``
and the classifier and verifier of ``--only classifier --only verifier --adversarial 0.02 --noise
--steps 1600`` (PGD-trained: without it the synthesized videos do not transfer between networks), on the
default domain (a still camera, ``CAMERA_SPEED`` = 0).

Every step draws a new batch of clips (infinite data, so no epochs and no overfitting to a fixed set),
normalises with the generator's ``PIXEL_MEAN``/``PIXEL_STD`` and takes one AdamW step on each network
(separate optimisers, one-cycle learning rate). The classifier and verifier share one stream of
batches; the evaluator, the independent judge of quality measurements, learns from its own stream
(seed ``seed + EVALUATOR_STREAM_OFFSET``) with pixel noise on most clips (:func:`add_pixel_noise`).
Then each is evaluated on a held-out generated set drawn from seed ``seed + HELD_OUT_SEED_OFFSET``
(never seen in training), and the script writes ``classifier.pt``, ``verifier.pt`` and ``evaluator.pt``
(plain state dicts, loadable with ``torch.load(weights_only=True)``) and ``training.json`` (seed, pixel
statistics, timing, torch version, and per network its steps, augmentations, camera speed and held-out
accuracies; entries of networks not retrained are kept). The same seed, thread count and torch build
give the same weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from leaps_engine.engine.embedded.generator import (
    CAMERA_SPEED,
    CLASS_NAMES,
    PIXEL_MEAN,
    PIXEL_STD,
    generate_clips,
)
from leaps_engine.engine.embedded.networks import (
    EmbeddedClassifier,
    EmbeddedEvaluator,
    EmbeddedVerifier,
)

HELD_OUT_SEED_OFFSET = 10_000
EVALUATOR_STREAM_OFFSET = 20_000
NOISE_MAX_STD, NOISE_SHARE = 0.1, 0.8  # the evaluator's pixel-noise augmentation
NETWORKS = {"classifier": EmbeddedClassifier, "verifier": EmbeddedVerifier, "evaluator": EmbeddedEvaluator}


def normalise(clips: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] ``[N, 3, T, H, W]`` -> the networks' input space."""
    mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(PIXEL_STD).view(3, 1, 1, 1)
    return (clips - mean) / std


def training_batch(
    batch_size: int, generator: torch.Generator, noisy: bool = False, camera_speed: float = CAMERA_SPEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel clips ``[B, 3, T, H, W]`` in [0, 1] and their labels ``[B]``; ``noisy`` adds pixel noise."""
    labels = torch.randint(0, len(CLASS_NAMES), (batch_size,), generator=generator)
    clips = generate_clips(labels, generator, camera_speed=camera_speed)
    return (add_pixel_noise(clips, generator) if noisy else clips), labels


def adversarial_clips(
    net: nn.Module, clips: torch.Tensor, labels: torch.Tensor, epsilon: float, steps: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """PGD in pixel space (L-inf ball of radius ``epsilon``, random start, ``steps`` signed-gradient steps
    of 2.5 * epsilon / steps): the clips ``[B, 3, T, H, W]`` that most raise ``net``'s loss nearby.

    Training on them (Madry et al., 2018) gives a network whose input gradients are perceptually aligned,
    which is what inverting it needs. The attack runs ``net`` in eval mode, so it leaves the BatchNorm
    running statistics alone."""
    was_training = net.training
    net.eval()
    delta = (torch.rand(clips.shape, generator=generator) * 2 - 1) * epsilon
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = nn.functional.cross_entropy(net(normalise((clips + delta).clamp(0, 1))), labels)
        (gradient,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + 2.5 * epsilon / steps * gradient.sign()).clamp(-epsilon, epsilon)
    net.train(was_training)
    return (clips + delta).clamp(0, 1)


def add_pixel_noise(clips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Independent Gaussian noise on every pixel of every frame, std ~ U(0, NOISE_MAX_STD), on a share
    NOISE_SHARE of the clips; clamped to [0, 1]. Without it one grey level of frame-to-frame noise swings
    the networks (their first layer takes frame differences)."""
    batch = clips.shape[0]
    std = torch.rand(batch, generator=generator) * NOISE_MAX_STD
    std = torch.where(torch.rand(batch, generator=generator) < NOISE_SHARE, std, torch.zeros(batch))
    noise = torch.randn(clips.shape, generator=generator) * std.view(batch, 1, 1, 1, 1)
    return (clips + noise).clamp(0, 1)


def train_networks(
    networks: dict[str, nn.Module], seed: int, steps: int, batch_size: int, log: Callable[[str], None],
    noisy: bool = False, epsilon: float = 0.0, attack_steps: int = 3, camera_speed: float = CAMERA_SPEED,
) -> None:
    """Train every network in ``networks`` for ``steps`` steps on the same stream of batches; with
    ``epsilon`` > 0, each on PGD clips crafted against itself (:func:`adversarial_clips`)."""
    generator = torch.Generator().manual_seed(seed)
    optimisers = {
        name: torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4) for name, net in networks.items()
    }
    schedules = {
        name: torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps, pct_start=0.15)
        for name, optimiser in optimisers.items()
    }
    running = {name: [0.0, 0.0] for name in networks}  # loss and accuracy since the last report
    start, report_every = time.perf_counter(), max(1, steps // 20)
    for step in range(1, steps + 1):
        clips, labels = training_batch(batch_size, generator, noisy, camera_speed)
        for name, net in networks.items():
            net.train()
            inputs = adversarial_clips(net, clips, labels, epsilon, attack_steps, generator) if epsilon else clips
            logits = net(normalise(inputs))
            loss = nn.functional.cross_entropy(logits, labels)
            optimisers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimisers[name].step()
            schedules[name].step()
            running[name][0] += loss.item() / report_every
            running[name][1] += (logits.argmax(1) == labels).float().mean().item() / report_every
        if step % report_every == 0 or step == steps:
            scores = "  ".join(f"{name} loss {loss:.3f} acc {acc:.3f}" for name, (loss, acc) in running.items())
            log(f"step {step:5d}/{steps}  {scores}  {time.perf_counter() - start:6.1f}s")
            running = {name: [0.0, 0.0] for name in networks}


def held_out_set(
    seed: int, per_class: int, chunk: int = 240, camera_speed: float = CAMERA_SPEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` clips of every class in [0, 1], ``[N, 3, T, H, W]``, and their labels, from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(CLASS_NAMES)).repeat(per_class)
    clips = torch.cat([generate_clips(part, generator, camera_speed=camera_speed) for part in labels.split(chunk)])
    return clips, labels


@torch.no_grad()
def per_class_accuracy(net: nn.Module, clips: torch.Tensor, labels: torch.Tensor, chunk: int = 240) -> torch.Tensor:
    """Accuracy ``[K]`` of ``net`` (in eval mode) on each class of pixel clips ``clips``."""
    net.eval()
    predictions = torch.cat([net(normalise(part)).argmax(1) for part in clips.split(chunk)])
    correct = (predictions == labels).float()
    return torch.zeros(len(CLASS_NAMES)).index_add_(0, labels, correct) / torch.bincount(labels).float()


def run(
    seed: int, steps: int, batch_size: int, out: Path, per_class: int, log: Callable[[str], None],
    only: tuple[str, ...] = tuple(NETWORKS), noisy: bool = False, epsilon: float = 0.0,
    camera_speed: float = CAMERA_SPEED,
) -> dict:
    """Train the networks named in ``only``, evaluate them on the held-out set, write their weights and
    ``training.json``. ``noisy`` adds pixel noise to the classifier's and verifier's batches too (the
    evaluator always has it); ``epsilon`` > 0 trains the classifier and verifier adversarially;
    ``camera_speed`` is the fastest camera pan of the clips (0: a still camera)."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    built = {name: build() for name, build in NETWORKS.items()}  # always all three: the same initial weights
    start = time.perf_counter()
    shared = {name: built[name] for name in ("classifier", "verifier") if name in only}
    if shared:
        train_networks(shared, seed, steps, batch_size, log, noisy=noisy, epsilon=epsilon, camera_speed=camera_speed)
    if "evaluator" in only:
        train_networks({"evaluator": built["evaluator"]}, seed + EVALUATOR_STREAM_OFFSET, steps, batch_size, log,
                       noisy=True, camera_speed=camera_speed)
    train_seconds = time.perf_counter() - start
    clips, labels = held_out_set(seed + HELD_OUT_SEED_OFFSET, per_class, camera_speed=camera_speed)
    previous = out / "training.json"
    report = json.loads(previous.read_text()) if previous.exists() and set(only) != set(NETWORKS) else {}
    report.update({
        "seed": seed,
        "held_out": {"seed": seed + HELD_OUT_SEED_OFFSET, "clips": len(labels)},
        "pixel_mean": clips.mean((0, 2, 3, 4)).tolist(),
        "pixel_std": clips.transpose(0, 1).reshape(3, -1).std(1).tolist(),
    })
    out.mkdir(parents=True, exist_ok=True)
    for name in only:
        net = built[name]
        accuracy = per_class_accuracy(net, clips, labels)
        report[name] = {
            "steps": steps,
            "batch_size": batch_size,
            "pixel_noise": noisy or name == "evaluator",
            "adversarial_epsilon": 0.0 if name == "evaluator" else epsilon,
            "camera_speed": camera_speed,
            "parameters": sum(p.numel() for p in net.parameters()),
            "held_out_accuracy": accuracy.mean().item(),
            "per_class_accuracy": dict(zip(CLASS_NAMES, accuracy.tolist(), strict=True)),
        }
        torch.save(net.state_dict(), out / f"{name}.pt")
        log(f"{name}: held-out accuracy {accuracy.mean().item():.4f} (worst class {accuracy.min().item():.4f})")
        for class_name, value in zip(CLASS_NAMES, accuracy.tolist(), strict=True):
            log(f"    {class_name:<26s} {value:.4f}")
    report["timing"] = {
        "networks_trained": list(only),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    report["torch_version"] = torch.__version__
    (out / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="folder for the weights and training.json")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--held-out-per-class", type=int, default=200, help="held-out clips per class")
    parser.add_argument("--only", action="append", choices=list(NETWORKS),
                        help="train only this network (repeat for several; default: all three)")
    parser.add_argument("--noise", action="store_true",
                        help="pixel-noise augmentation for the classifier and verifier too (the shipped ones have it)")
    parser.add_argument("--adversarial", type=float, default=0.0, metavar="EPSILON",
                        help="train the classifier and verifier on PGD clips within this L-inf pixel radius")
    parser.add_argument("--camera-speed", type=float, default=CAMERA_SPEED, metavar="SPEED",
                        help=f"the fastest camera pan, image coordinates per frame (default {CAMERA_SPEED}: a "
                             "still camera; 0.1 pans at up to 1.6 pixels per frame at 32x32)")
    args = parser.parse_args(argv)
    only = tuple(args.only) if args.only else tuple(NETWORKS)
    run(args.seed, args.steps, args.batch_size, args.out, args.held_out_per_class, lambda line: print(line, flush=True),
        only, args.noise, args.adversarial, args.camera_speed)


if __name__ == "__main__":
    main()
