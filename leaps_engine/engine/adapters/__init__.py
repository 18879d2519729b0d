"""Model adapters: one interface over torchvision, pytorchvideo and the embedded models."""

from leaps_engine.engine.adapters.base import InputSpec, VideoAdapter
from leaps_engine.engine.adapters.factory import create_adapter, get_adapter_entry, list_adapters
from leaps_engine.engine.adapters.registry import AdapterParts, register_adapter

__all__ = [
    "AdapterParts",
    "InputSpec",
    "VideoAdapter",
    "create_adapter",
    "get_adapter_entry",
    "list_adapters",
    "register_adapter",
]
