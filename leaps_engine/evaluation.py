"""Score the videos of result folders and compare settings: the ``leaps-engine evaluate`` job without its
command line (which prints :func:`leaps_engine.outputs.tables.quality_table` and writes it to a file).

Every clip's saved tensor is re-scored by its run's model and verifier and by an optional evaluator;
targets are matched to each network's classes by name (:func:`leaps_engine.engine.class_names.class_index`:
exact, then case- and underscore-insensitive; a class the network lacks counts as wrong). Runs are grouped
by keys read from result.json (:func:`leaps_engine.outputs.results.config_value`), and each group gets
top-1/5 accuracy, the mean target probability, the Inception Score and consecutive-frame PSNR / SSIM
(:mod:`leaps_engine.engine.metrics`), and the motion figure (:mod:`leaps_engine.engine.motion`): the mean
motion similarity of each video and its stimulus, and how many classes reach
:data:`MOTION_MATCH_THRESHOLD` on average.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from leaps_engine.engine import metrics, motion
from leaps_engine.engine.adapters import create_adapter, get_adapter_entry
from leaps_engine.engine.class_names import class_index
from leaps_engine.errors import LeapsError, close_names
from leaps_engine.export.backends import ForwardBackend, create_forward_backend
from leaps_engine.outputs.results import Run, config_keys, config_value, find_result_files, load_run, load_video

DEFAULT_GROUP_BY = ("model", "method", "objective", "distance", "priming_layers", "verifier")
ROLES = ("model", "verifier", "evaluator")
MOTION_MATCH_THRESHOLD = 0.4  # a class's mean motion similarity at or above this: matched (benchmarks/motion_figure.py)


@dataclass
class GroupScores:
    """What the runs of one group add up to; per role: lists of ``[B, K]`` probs and ``[B]`` targets."""

    runs: int = 0
    probs: dict[str, list[torch.Tensor]] = field(default_factory=lambda: {role: [] for role in ROLES})
    targets: dict[str, list[torch.Tensor]] = field(default_factory=lambda: {role: [] for role in ROLES})
    frames: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # "psnr_synthesized" -> [B] tensors
    motion: dict[str, list[float]] = field(default_factory=dict)  # target class -> motion similarities
    pixel_std_ratios: list[float] = field(default_factory=list)  # per video: its frames' pixel std / stimulus's


def evaluate_results(
    paths: Sequence[str], *, evaluator: str | None = None, evaluator_weights: str | None = None,
    device: torch.device | None = None, batch_size: int = 16, splits: int = 10,
    group_by: str | Sequence[str] | None = None, forward_backend: str = "torch",
    progress: Callable[[int], None] | None = None, on_start: Callable[[int], None] | None = None,
) -> tuple[tuple[str, ...], list[dict]]:
    """Score every clip of the results under ``paths``; return the group keys and one row per group.

    ``progress(n)`` is called after each batch of ``n`` clips; ``on_start(total)`` once, with the number
    of clips, before any network runs.

    Raises:
        LeapsError: no results, an unreadable result, an unknown group key or network, or a group that
            mixes networks with different class lists.
    """
    if batch_size < 1 or splits < 1:
        raise LeapsError(f"--batch-size and --splits must be >= 1, got {batch_size} and {splits}")
    if evaluator is not None:
        evaluator_weights = evaluator_weights or get_adapter_entry(evaluator).pretrained  # unknown name: fails early
    elif evaluator_weights is not None:
        raise LeapsError("--evaluator-weights needs --evaluator")
    device = device or torch.device("cpu")
    keys = _parse_group_by(group_by)
    runs = [load_run(path) for path in find_result_files(paths)]
    _check_group_keys(runs, keys)
    if on_start is not None:
        on_start(sum(len(run.summary["clips"]) for run in runs))
    cache = NetworkCache(device, forward_backend, batch_size)
    judge = None if evaluator is None else cache.get(evaluator, evaluator_weights)
    groups: dict[tuple, GroupScores] = {}
    for run in runs:
        networks = {**_run_networks(run, cache), "evaluator": judge}
        group = groups.setdefault(tuple(config_value(run.summary, key) for key in keys), GroupScores())
        _score_run(run, networks, group, batch_size, device, progress or (lambda n: None))
    rows = [{**dict(zip(keys, key, strict=True)), **_summarize(scores, splits, evaluator)}
            for key, scores in groups.items()]
    return keys, rows


def _parse_group_by(group_by: str | Sequence[str] | None) -> tuple[str, ...]:
    if group_by is None:
        return DEFAULT_GROUP_BY
    items = group_by.split(",") if isinstance(group_by, str) else group_by
    return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))


def _check_group_keys(runs: list[Run], keys: tuple[str, ...]) -> None:
    known = set().union(*(config_keys(run.summary) for run in runs))
    for key in keys:
        if key not in known:
            raise LeapsError(f"unknown --group-by key {key!r}{close_names(key, sorted(known))}")


class NetworkCache:
    """Each scoring network, built once per (name, weights) and run through the chosen forward backend."""

    def __init__(self, device: torch.device, forward_backend: str, batch_size: int):
        self.device = device
        self.forward_backend = forward_backend
        self.max_batch = max(2, batch_size)  # TensorRT sizes its engine for the largest batch
        self.networks: dict[tuple[str, str], ForwardBackend] = {}

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self.networks

    def get(self, name: str, weights: str | None) -> ForwardBackend:
        """The network ``name`` with ``weights`` (default: pretrained)."""
        weights = weights or get_adapter_entry(name).pretrained
        if (name, weights) not in self.networks:
            adapter = create_adapter(name, weights=weights, device=self.device)
            self.networks[name, weights] = create_forward_backend(self.forward_backend, adapter, weights=weights,
                                                                  max_batch=self.max_batch)
        return self.networks[name, weights]


def _run_networks(run: Run, cache: NetworkCache) -> dict[str, ForwardBackend]:
    """The run's model and (if any) verifier, re-created from the names and weights in its result.json."""
    networks = {}
    for role in ("model", "verifier"):
        if run.summary.get(role) is not None:
            name, weights = run.summary[role]["name"], run.summary[role].get("weights")
            if weights == "random" and (name, weights) not in cache:
                warnings.warn(f"{run.path}: the {role} {name} had random weights, which cannot be re-created",
                              stacklevel=2)
            networks[role] = cache.get(name, weights)
    return networks


def _score_run(run: Run, networks: dict, scores: GroupScores, batch_size: int, device: torch.device,
               progress: Callable[[int], None]) -> None:
    clips = run.summary["clips"]
    scores.runs += 1
    for start in range(0, len(clips), batch_size):
        batch = clips[start : start + batch_size]
        videos = [load_video(run.path, clip["tensor"]) for clip in batch]
        if len({video.shape for video in videos}) > 1:
            raise LeapsError(f"the clips of {run.path} have different sizes")
        videos = torch.stack(videos).to(device)  # [B, 3, T, H, W]
        for role, network in networks.items():
            if network is not None:
                names = [clip["target_class"] for clip in batch]
                scores.probs[role].append(_probabilities(network, videos))
                scores.targets[role].append(_target_indices(names, network.adapter.spec.class_names))
        _add_frame_scores(scores, "synthesized", videos)
        for clip, video in zip(batch, videos, strict=True):
            if clip.get("stimulus_tensor"):
                stimulus = load_video(run.path, clip["stimulus_tensor"])[None].to(device)
                _add_frame_scores(scores, "stimulus", stimulus)
                if min(video.shape[1], stimulus.shape[2]) >= 2:  # motion needs two frames
                    similarity = motion.motion_similarity(video[None], stimulus).item()
                    scores.motion.setdefault(str(clip["target_class"]), []).append(similarity)
                spread = metrics.frame_pixel_std(stimulus).item()
                if spread > 0:
                    scores.pixel_std_ratios.append(metrics.frame_pixel_std(video[None]).item() / spread)
        progress(len(batch))


def _probabilities(network: ForwardBackend, videos: torch.Tensor) -> torch.Tensor:
    """Softmax ``[B, K]`` (on the CPU) of ``network`` on pixels ``[B, 3, T, H, W]``; the adapter resizes."""
    return network.logits(network.adapter.spec.normalize(videos)).softmax(-1).cpu()


def _target_indices(names: list[str], class_names: Sequence[str]) -> torch.Tensor:
    """``[B]`` indices of the target names in ``class_names`` (:func:`class_index`); -1 where missing."""
    indices = [class_index(str(name), class_names) for name in names]
    return torch.tensor([-1 if index is None else index for index in indices], dtype=torch.long)


def _add_frame_scores(scores: GroupScores, kind: str, videos: torch.Tensor) -> None:
    scores.frames.setdefault(f"psnr_{kind}", []).append(metrics.consecutive_frame_psnr(videos))
    scores.frames.setdefault(f"ssim_{kind}", []).append(metrics.consecutive_frame_ssim(videos))
    scores.frames.setdefault(f"high_frequency_share_{kind}", []).append(metrics.high_frequency_share(videos))


def _summarize(scores: GroupScores, splits: int, evaluator: str | None) -> dict:
    """One group's row. Verifier metrics cover the runs that have a verifier (all of them unless
    ``verifier`` was left out of --group-by); frame metrics ignore NaN (single-frame clips)."""
    row: dict = {"n_runs": scores.runs, "n_videos": sum(len(t) for t in scores.targets["model"]),
                 "evaluator": evaluator}
    per_role = {role: _role_metrics(scores, role, splits) for role in ROLES}
    for metric in ("top1", "top5", "target_prob"):
        row.update({f"{metric}_{role}": per_role[role][metric] for role in ROLES})
    row.update({f"inception_score_{role}": per_role[role]["inception_score"] for role in ROLES})
    for name in ("psnr_synthesized", "ssim_synthesized", "psnr_stimulus", "ssim_stimulus",
                 "high_frequency_share_synthesized", "high_frequency_share_stimulus"):
        values = torch.cat(scores.frames[name]) if name in scores.frames else torch.empty(0)
        row[name] = _number(values.nanmean().item()) if values.numel() else None
    synthesized, stimulus = row["high_frequency_share_synthesized"], row["high_frequency_share_stimulus"]
    row["high_frequency_ratio"] = synthesized / stimulus if synthesized is not None and stimulus else None
    row.update(_motion_metrics(scores.motion))
    ratios = scores.pixel_std_ratios
    row["pixel_std_ratio"] = sum(ratios) / len(ratios) if ratios else None
    row["pixel_std_ratio_min"] = min(ratios) if ratios else None
    return row


def _motion_metrics(similarities: dict[str, list[float]]) -> dict:
    """The mean motion similarity over the videos, each class's mean (``motion_similarity_per_class``,
    class name -> mean), and the classes whose mean reaches the threshold (of those with a stimulus); NaN
    similarities (nothing moves) are left out."""
    per_class = {name: [v for v in values if not math.isnan(v)] for name, values in similarities.items()}
    class_means = {name: sum(values) / len(values) for name, values in per_class.items() if values}
    every = [value for values in per_class.values() for value in values]
    return {"motion_similarity": sum(every) / len(every) if every else None,
            "motion_similarity_per_class": class_means,
            "motion_classes": len(class_means),
            "motion_classes_matched": sum(mean >= MOTION_MATCH_THRESHOLD for mean in class_means.values())}


def _role_metrics(scores: GroupScores, role: str, splits: int) -> dict:
    """Accuracies (percent), mean target probability and IS of one role; all None without that network."""
    probs_list, targets_list = scores.probs[role], scores.targets[role]
    if not probs_list:
        return dict.fromkeys(("top1", "top5", "target_prob", "inception_score"))
    if len({probs.shape[1] for probs in probs_list}) > 1:
        raise LeapsError(f"a group mixes {role} networks with different class lists; add '{role}' to --group-by")
    probs, targets = torch.cat(probs_list), torch.cat(targets_list)
    mean, std = metrics.inception_score(probs, splits)
    return {"top1": metrics.topk_accuracy(probs, targets, 1), "top5": metrics.topk_accuracy(probs, targets, 5),
            "target_prob": metrics.mean_target_probability(probs, targets),
            "inception_score": {"mean": _number(mean), "std": _number(std)}}


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value
