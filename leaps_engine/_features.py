"""Which optional packages are installed, and their versions: the one place that asks.

* :func:`has` answers without importing the package (``importlib.util.find_spec``).
* :func:`require` imports it, or raises a :class:`LeapsError` naming what needs it and how to install it.
* :func:`extra_for` names the extra of ``pyproject.toml`` that brings a package.
* :func:`package_version` / :func:`package_versions` read installed versions from package metadata.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from importlib import metadata
from types import ModuleType

from leaps_engine.errors import LeapsError

# What to install for a missing module: the pip packages, and the extra of this project that brings them.
INSTALL = {
    "av": ("av", None),
    "onnx": ("onnx onnxscript", "export"),
    "onnxscript": ("onnx onnxscript", "export"),
    "onnxruntime": ("onnxruntime", "export"),
    "tensorrt": ("tensorrt", "gpu"),
    "ray": ("ray", "distributed"),
    "cv2": ("opencv-python-headless", None),
}
NAMES = {"av": "PyAV", "ray": "Ray", "cv2": "OpenCV"}  # how messages name a module that is not "the <module> package"


def has(module: str) -> bool:
    """Whether ``module`` can be imported (it is not imported)."""
    return importlib.util.find_spec(module) is not None


def extra_for(module: str, device_type: str = "cpu") -> str | None:
    """The extra of this project that installs ``module``: ``gpu`` for TensorRT and for ONNX Runtime on
    CUDA (onnxruntime-gpu), ``export`` for the CPU ONNX packages (never both: the two ONNX Runtime builds
    install the same module), ``distributed`` for Ray; ``None`` for a plain dependency."""
    extra = INSTALL.get(module, (module, None))[1]
    return "gpu" if extra == "export" and device_type == "cuda" else extra


def require(module: str, purpose: str, device_type: str = "cpu") -> ModuleType:
    """Import ``module``; if it is not installed, raise a :class:`LeapsError` such as "ONNX export needs the
    onnx package: pip install onnx onnxscript (or pip install 'leaps-engine[export]')"."""
    try:
        return importlib.import_module(module)
    except ImportError:
        packages = INSTALL.get(module, (module, None))[0]
        extra = extra_for(module, device_type)
        also = f" (or pip install 'leaps-engine[{extra}]')" if extra else ""
        name = NAMES.get(module, f"the {module} package")
        raise LeapsError(f"{purpose} needs {name}: pip install {packages}{also}") from None


def package_version(package: str, missing: str = "not installed") -> str:
    """The installed version of the distribution ``package`` (e.g. ``torch``), or ``missing``."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return missing


def package_versions(packages: Iterable[str], missing: str = "not installed") -> dict[str, str]:
    """``{package: version}`` for each of ``packages`` (see :func:`package_version`)."""
    return {package: package_version(package, missing) for package in packages}
