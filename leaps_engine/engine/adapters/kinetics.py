"""What the Kinetics-400 model families share: class names, normalisation, and loading their weights.

A Kinetics model is built with one of three ``weights``: ``"kinetics400"`` (downloaded by the model's
library from its own URL), ``"random"`` (no weights) or the path of a local checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision.models import video

from leaps_engine.engine.adapters.weights import RANDOM_WEIGHTS, load_checkpoint_into
from leaps_engine.errors import LeapsError, one_line

KINETICS400 = "kinetics400"
# The 400 class names in label order, from torchvision's public weights metadata (every Kinetics-400
# weights enum carries the same list).
KINETICS400_CLASSES: tuple[str, ...] = tuple(video.R3D_18_Weights.KINETICS400_V1.meta["categories"])

# The normalisation of the PySlowFast / pytorchvideo Kinetics models (also torchvision's MViT ports).
# torchvision's own video models carry theirs in their weights' transforms.
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)


def build_kinetics_model(name: str, weights: str, make: Callable[[bool], nn.Module]) -> nn.Module:
    """Build a model with ``weights``: ``"kinetics400"``, ``"random"`` or a checkpoint path.

    Args:
        name: registry name, for messages.
        weights: already validated by the registry.
        make: ``make(pretrained)`` builds the model, downloading the Kinetics-400 weights if ``pretrained``.
    """
    if weights == KINETICS400:
        try:
            return make(True)
        except Exception as error:  # network, SSL, hash and disk errors all end here
            raise LeapsError(
                f"could not download the kinetics400 weights of {name} ({type(error).__name__}: "
                f"{one_line(error, 160)}); use a local checkpoint file or {RANDOM_WEIGHTS} weights instead"
            ) from None
    model = make(False)
    if weights != RANDOM_WEIGHTS:
        load_checkpoint_into(model, weights, name)
    return model
