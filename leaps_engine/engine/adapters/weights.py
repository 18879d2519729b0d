"""Weights of adapters: the ``"random"`` keyword, and loading local checkpoints into a built model.

Pretrained downloads are each family's own (its library's loader); checkpoints are loaded here with
``torch.load(weights_only=True)`` and must match the model's keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from leaps_engine.errors import LeapsError, one_line

RANDOM_WEIGHTS = "random"


def looks_like_path(weights: str) -> bool:
    """Whether ``weights`` names a file (a path, a checkpoint suffix, or an existing file)."""
    return os.sep in weights or weights.endswith((".pt", ".pth", ".pyth", ".ckpt", ".bin")) or os.path.exists(weights)


def load_checkpoint_into(model: nn.Module, path: str, model_name: str) -> None:
    """Load a local checkpoint into ``model`` with ``weights_only=True``; keys and shapes must match.

    Accepts a plain state dict or a dict holding one under ``state_dict``, ``model_state`` or ``model``
    (the layouts of torchvision, PySlowFast and pytorchvideo checkpoints).
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise LeapsError(f"{path} is not a readable PyTorch checkpoint ({one_line(error, 160)})") from None
    state_dict = _find_state_dict(checkpoint)
    if state_dict is None:
        raise LeapsError(f"{path} holds no state dict of tensors")
    _load_matching(model, state_dict, path, model_name)


def _find_state_dict(checkpoint: object) -> Mapping[str, torch.Tensor] | None:
    if not isinstance(checkpoint, Mapping):
        return None
    for key in ("state_dict", "model_state", "model"):
        if isinstance(checkpoint.get(key), Mapping):
            return checkpoint[key]
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint
    return None


def _load_matching(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, model_name: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise LeapsError(f"{source} does not match {model_name}: keys {', '.join(detail)}")
    for key, tensor in state_dict.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise LeapsError(
                f"{source} does not match {model_name}: {key} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state_dict)
