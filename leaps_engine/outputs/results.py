"""The result folder: the one module that writes and reads it, and the ``result.json`` schema.

Layout of a result folder (``leaps-engine synthesize --out``, and each finished sweep job)::

    result.json                      config, versions, and per clip: scores, history, file paths
    clip_00_<class>/video.mp4        the synthesized clip (upscaled for viewing when small)
    clip_00_<class>/video.gif
    clip_00_<class>/contact_sheet.png   stimulus frames above the synthesized frames
    clip_00_<class>/video.pt         raw tensor [3, T, H, W] in [0, 1]
    clip_00_<class>/stimulus.pt      the stimulus pixels the model saw [3, T, H, W]
    clip_00_<class>/snapshots/step_00100.mp4   with --snapshots

Paths in result.json are relative to the folder that holds it. Writing: :func:`clip_folder`,
:class:`SnapshotWriter`, :func:`write_clip`, :func:`run_summary` and :func:`write_summary`. Reading:
:func:`find_result_files` (folders searched recursively, manifests), :func:`load_run` (checked against the
schema), :func:`config_value` and :func:`load_video`. The keys are documented in the docs' result.json page.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from leaps_engine._features import package_versions
from leaps_engine._io import atomic_path, is_junk, read_text
from leaps_engine.config import SynthesisConfig
from leaps_engine.engine.adapters import VideoAdapter
from leaps_engine.engine.synthesis import StepState, SynthesisResult
from leaps_engine.errors import LeapsError, one_line
from leaps_engine.outputs import video as video_files

RESULT_FILE = "result.json"
DISPLAY_MIN_SIDE = 192  # small clips are upscaled (nearest) to at least this many pixels for viewing
# What result.json files written before these settings existed ran with.
CONFIG_DEFAULTS = {"method": "leaps", "objective": "full", "restarts": 1, "motion_sparsity": 0.0}
VERSIONED_PACKAGES = ("leaps-engine", "torch", "torchvision", "pytorchvideo", "numpy", "av", "pillow")


# ---- writing ----------------------------------------------------------------------------------------------

def is_result_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a result (which a new run on the same output replaces)."""
    return (folder / RESULT_FILE).is_file()


def class_slug(name: str) -> str:
    """A class name as a folder-name fragment: lower case, runs of other characters as ``_``, 40 at most."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40] or "class"


def clip_folder(out: Path, index: int, class_name: str) -> Path:
    """The folder of clip ``index`` (target ``class_name``) in result folder ``out``."""
    return out / f"clip_{index:02d}_{class_slug(class_name)}"


def display_scale(video: torch.Tensor) -> int:
    """The integer upscale that shows ``video`` ``[3, T, H, W]`` at least ``DISPLAY_MIN_SIDE`` pixels high."""
    return max(1, math.ceil(DISPLAY_MIN_SIDE / min(video.shape[-2:])))


class SnapshotWriter:
    """A synthesis callback that writes each clip as mp4 at the requested steps (paper Fig. 8)."""

    def __init__(self, steps: Sequence[int], clip_dirs: list[Path], fps: int):
        self.steps = set(steps)
        self.clip_dirs = clip_dirs
        self.fps = fps
        self.paths: list[list[Path]] = [[] for _ in clip_dirs]

    def __call__(self, state: StepState) -> None:
        if state.step not in self.steps:
            return
        videos = state.videos()
        for index, clip_dir in enumerate(self.clip_dirs):
            path = clip_dir / "snapshots" / f"step_{state.step:05d}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            video_files.write_mp4(path, videos[index], fps=self.fps, scale=display_scale(videos[index]))
            self.paths[index].append(path)


def write_clip(result: SynthesisResult, index: int, clip_dir: Path, out: Path, fps: int, stimulus: str | None,
               snapshots: list[Path]) -> dict:
    """Write clip ``index`` of ``result`` into ``clip_dir`` and return its entry of result.json."""
    clip_dir.mkdir(parents=True, exist_ok=True)
    video = result.videos[index]
    scale = display_scale(video)
    stimulus_pixels = result.stimuli[index]
    files = {"mp4": clip_dir / "video.mp4", "gif": clip_dir / "video.gif",
             "contact_sheet": clip_dir / "contact_sheet.png", "tensor": clip_dir / "video.pt"}
    video_files.write_mp4(files["mp4"], video, fps=fps, scale=scale)
    video_files.write_gif(files["gif"], video, fps=fps, scale=scale)
    rows = [("synthesized", video)]
    if stimulus_pixels is not None:
        rows.insert(0, ("stimulus", stimulus_pixels))
    video_files.write_contact_sheet(files["contact_sheet"], rows, scale=scale)
    video_files.write_tensor(files["tensor"], video)
    if stimulus_pixels is not None:
        files["stimulus_tensor"] = clip_dir / "stimulus.pt"
        video_files.write_tensor(files["stimulus_tensor"], stimulus_pixels)
    score = result.scores[index]
    return {
        "target_class": score.target_class,
        "target_index": score.target_index,
        "seed": result.seeds[index],
        "kept_restart": result.kept_restarts[index],
        "restart_losses": result.restart_losses[index].tolist(),
        "stimulus": stimulus,
        "model_top1": score.model_top1,
        "model_target_prob": score.model_target_prob,
        "model_top5": [{"class": name, "prob": prob} for name, prob in score.model_top5],
        "verifier_top1": score.verifier_top1,
        "verifier_target_prob": score.verifier_target_prob,
        "verifier_top5": None if score.verifier_top5 is None else
        [{"class": name, "prob": prob} for name, prob in score.verifier_top5],
        **{key: str(path.relative_to(out)) for key, path in files.items()},
        "snapshots": [str(path.relative_to(out)) for path in snapshots],
        "display_scale": scale,
        "fps": fps,
        "history": {term: values[:, index].tolist() for term, values in result.history.items()},
    }


def run_summary(model: VideoAdapter, model_weights: str, verifier: VideoAdapter | None, verifier_weights: str | None,
                config: SynthesisConfig, result: SynthesisResult, clips: list[dict],
                seconds: float, device: torch.device, forward_backend: str) -> dict:
    """The whole result.json of a run, ``clips`` from :func:`write_clip`."""
    return {
        "model": {"name": model.name, "weights": model_weights},
        "verifier": None if verifier is None else {"name": verifier.name, "weights": verifier_weights},
        "config": {**asdict(config), "size": list(config.size), "betas": list(config.betas)},
        "acceleration": {**asdict(result.acceleration), "kernels_selected": result.kernels,
                         "kernels_fallback": result.kernels_fallback,
                         "forward_backend": forward_backend},
        "timing": {key: round(value, 4) for key, value in result.timing.items()},
        "model_input_size": list(model.spec.model_size(*config.size)),
        "verifier_input_size": None if verifier is None else list(verifier.spec.model_size(*config.size)),
        "priming_taps": result.taps,
        "coherence_tap": result.coherence_tap,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "synthesis_seconds": round(seconds, 3),
        "versions": {"python": platform.python_version(), **package_versions(VERSIONED_PACKAGES)},
        "clips": clips,
    }


def write_summary(folder: Path, summary: dict) -> None:
    """Write ``summary`` as ``folder/result.json`` (whole or not at all)."""
    with atomic_path(folder / RESULT_FILE) as temporary:
        temporary.write_text(json.dumps(summary, indent=2))


# ---- reading ----------------------------------------------------------------------------------------------

@dataclass
class Run:
    """One result.json: its path and its contents."""

    path: Path
    summary: dict


def find_result_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The result.json files named by ``paths`` (folders searched recursively, manifests read), deduplicated.

    A manifest is ``.txt`` (one path a line, ``#`` comments) or ``.json`` (a list of paths); its relative
    paths are resolved against its folder. Hidden folders (unfinished results) are not searched.

    Raises:
        LeapsError: no paths; a path that does not exist, holds no result.json, or is none of these.
    """
    if not paths:
        raise LeapsError("give at least one result folder, parent folder or manifest")
    found: dict[Path, None] = {}
    for path in paths:
        for result in _expand(Path(path), allow_manifest=True):
            found.setdefault(result.resolve(), None)
    return list(found)


def _expand(path: Path, allow_manifest: bool) -> list[Path]:
    if not path.exists():
        raise LeapsError(f"path not found: {path}")
    if path.is_dir():
        results = files_under(path, RESULT_FILE)
        if not results:
            raise LeapsError(f"no {RESULT_FILE} found under {path}")
        return results
    if path.name == RESULT_FILE:
        return [path]
    if allow_manifest and path.suffix.lower() in (".txt", ".json"):
        return [result for entry in _read_manifest(path) for result in _expand(entry, allow_manifest=False)]
    raise LeapsError(f"{path} is not a result folder, a {RESULT_FILE} or a manifest (.txt or .json)")


def files_under(folder: Path, name: str) -> list[Path]:
    """The files called ``name`` anywhere under ``folder``, sorted, except in hidden folders (unfinished
    results are built in one)."""
    return sorted(found for found in folder.rglob(name)
                  if not any(is_junk(Path(part)) for part in found.relative_to(folder).parts[:-1]))


def _read_manifest(path: Path) -> list[Path]:
    text = read_text(path, "manifest")
    try:
        if path.suffix.lower() == ".json":
            entries = json.loads(text)
            if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
                raise LeapsError(f"manifest {path} must hold a JSON list of paths")
        else:
            entries = [line.strip() for line in text.splitlines()]
            entries = [entry for entry in entries if entry and not entry.startswith("#")]
    except json.JSONDecodeError as error:
        raise LeapsError(f"cannot read manifest {path}: {one_line(error)}") from None
    if not entries:
        raise LeapsError(f"manifest {path} lists no paths")
    return [path.parent / Path(entry).expanduser() for entry in entries]


def load_run(path: Path) -> Run:
    """Read and check one result.json. Raises :class:`LeapsError` if it is not JSON or not a result."""
    try:
        summary = json.loads(read_text(path, "result file"))
    except json.JSONDecodeError as error:
        raise LeapsError(f"cannot read {path}: {one_line(error)}") from None
    problem = _result_problem(summary)
    if problem:
        raise LeapsError(f"{path} is not a leaps-engine {RESULT_FILE}: {problem}")
    return Run(path, summary)


def _result_problem(summary: object) -> str | None:
    if not isinstance(summary, dict):
        return "not a JSON object"
    if not isinstance(summary.get("model"), dict) or "name" not in summary["model"]:
        return "no 'model' with a 'name'"
    verifier = summary.get("verifier")
    if verifier is not None and (not isinstance(verifier, dict) or "name" not in verifier):
        return "'verifier' is neither null nor an object with a 'name'"
    if not isinstance(summary.get("config", {}), dict):
        return "'config' is not an object"
    clips = summary.get("clips")
    if not isinstance(clips, list) or not clips:
        return "no 'clips'"
    if not all(isinstance(clip, dict) and {"target_class", "tensor"} <= set(clip) for clip in clips):
        return "a clip lacks 'target_class' or 'tensor'"
    return None


def config_keys(summary: dict) -> set[str]:
    """The keys :func:`config_value` answers for this result: ``model``, ``verifier`` and the config's."""
    return {"model", "verifier", *CONFIG_DEFAULTS, *summary.get("config", {})}


def config_value(summary: dict, key: str) -> object:
    """A run's value of ``key``: the model's or verifier's name (``"none"``), else the config field (sizes
    as ``"TxHxW"``; settings older files lack take their default of the time)."""
    if key == "model":
        return summary["model"]["name"]
    if key == "verifier":
        return "none" if summary.get("verifier") is None else summary["verifier"]["name"]
    value = summary.get("config", {}).get(key, CONFIG_DEFAULTS.get(key))
    return "x".join(map(str, value)) if isinstance(value, list) else value


def load_video(result_file: Path, relative: str) -> torch.Tensor:
    """A saved clip ``[3, T, H, W]`` float in [0, 1], by its path relative to result.json's folder."""
    path = result_file.parent / relative
    try:
        video = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a missing or corrupt file
        raise LeapsError(f"cannot read tensor {path}: {one_line(error, 160)}") from None
    if not isinstance(video, torch.Tensor) or video.dim() != 4 or video.shape[0] != 3:
        raise LeapsError(f"{path} does not hold a video tensor [3, T, H, W]")
    return video.float()
