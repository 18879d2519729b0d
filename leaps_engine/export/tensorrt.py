"""The TensorRT forward backend: an engine built from the ONNX export, cached on disk, run on torch tensors.

TensorRT 10.x is weakly typed: the engine is built from the float32 export and half precision is a
builder flag (FP16, BF16) that lets TensorRT pick lower-precision kernels. TensorRT 11 removed weak
typing (those flags no longer exist; networks are always strongly typed), so half precision there means
building from a half-precision export. :func:`precision_plan` makes that choice once, from the version.

An engine is valid for one ONNX file, TensorRT version, GPU, shape profile and precision; all of them
name its file under ``<cache>/tensorrt`` (:func:`engine_file_key`), so a built engine is reused and a
stale one never loaded. Builds share a timing cache per TensorRT version, GPU and precision, which
makes rebuilding for another model size much faster. Inputs and outputs are torch CUDA tensors bound by
address and the engine runs on torch's current stream, so nothing is copied through the host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from leaps_engine._features import require
from leaps_engine._io import atomic_path
from leaps_engine.engine.adapters.base import VideoAdapter
from leaps_engine.errors import LeapsError
from leaps_engine.export._exported import ExportedForward
from leaps_engine.export.cache import artifact_name, cache_dir, digest, engine_cache_key
from leaps_engine.export.graph import DEFAULT_MAX_BATCH, INPUT_NAME, GraphSpec

OLDEST_SUPPORTED = 10
STRONG_TYPING_ONLY = 11  # the first major version without weak typing
HALF_FLAGS = {"float16": "FP16", "bfloat16": "BF16"}  # TensorRT 10.x builder flags
PRECISIONS = ("float32", *HALF_FLAGS)
OPT_BATCH_CAP = 8
WORKSPACE_BYTES = 4 << 30  # the most scratch memory a tactic may use; more only widens the tactic search
TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16}  # trt.DataType names


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.13.0.35"`` -> ``(10, 13, 0, 35)``; reading stops at the first part that is not a number
    (``"11.4.0rc1"`` -> ``(11, 4, 0)``)."""
    numbers = []
    for part in text.strip().split("."):
        match = re.match(r"\d+", part)
        if match:
            numbers.append(int(match.group()))
        if not match or match.end() < len(part):
            break
    if not numbers:
        raise LeapsError(f"cannot read the TensorRT version {text!r}")
    return tuple(numbers)


@dataclass(frozen=True)
class PrecisionPlan:
    """How to build an engine at one precision: the dtype of the ONNX export to parse, the builder
    flags to set and to clear (names of ``trt.BuilderFlag`` members), and whether the network is
    created strongly typed."""

    onnx_dtype: str
    builder_flags: tuple[str, ...]
    strongly_typed: bool
    cleared_flags: tuple[str, ...]


def precision_plan(tensorrt_version: str, dtype: str) -> PrecisionPlan:
    """The :class:`PrecisionPlan` for ``dtype`` (float32, float16, bfloat16) under ``tensorrt_version``.

    float32 also clears TF32 (on by default in TensorRT), so a float32 engine computes in float32.
    """
    if dtype not in PRECISIONS:
        raise LeapsError(f"the tensorrt backend runs {', '.join(PRECISIONS)}, not {dtype!r}")
    major = parse_version(tensorrt_version)[0]
    if major < OLDEST_SUPPORTED:
        raise LeapsError(f"TensorRT {tensorrt_version} is not supported; the tensorrt backend needs TensorRT "
                         f"{OLDEST_SUPPORTED} or newer: pip install -U 'leaps-engine[gpu]'")
    cleared = ("TF32",) if dtype == "float32" else ()
    if major >= STRONG_TYPING_ONLY and dtype == "bfloat16":
        raise LeapsError(f"TensorRT {tensorrt_version} is strongly typed and builds bfloat16 only from a bfloat16 "
                         "ONNX graph, which cannot be checked against eager here; use float16")
    if major >= STRONG_TYPING_ONLY:
        return PrecisionPlan(onnx_dtype=dtype, builder_flags=(), strongly_typed=True, cleared_flags=cleared)
    flags = (HALF_FLAGS[dtype],) if dtype in HALF_FLAGS else ()
    return PrecisionPlan(onnx_dtype="float32", builder_flags=flags, strongly_typed=False, cleared_flags=cleared)


def batch_profile(
    input_shape_chw_thw: tuple[int, ...], max_batch: int, opt_batch: int | None = None
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """The optimisation profile of the input ``video``: ``(min, opt, max)`` shapes for batches of 1 to
    ``max_batch`` of ``input_shape_chw_thw`` (one video, ``(3, T, H, W)``).

    TensorRT tunes its kernels for the ``opt`` shape and accepts every shape in the range. By default
    ``opt`` is the largest power of two up to ``max_batch`` and at most :data:`OPT_BATCH_CAP` (8): the
    batch sizes scoring and stimulus features use, and a size kernel tiles divide evenly.
    """
    if max_batch < 1:
        raise LeapsError(f"the largest batch must be at least 1, got {max_batch}")
    if opt_batch is None:
        opt_batch = 1 << (min(max_batch, OPT_BATCH_CAP).bit_length() - 1)
    if not 1 <= opt_batch <= max_batch:
        raise LeapsError(f"the batch TensorRT tunes for must be between 1 and {max_batch}, got {opt_batch}")
    shape = tuple(input_shape_chw_thw)
    return {INPUT_NAME: ((1, *shape), (opt_batch, *shape), (max_batch, *shape))}


def engine_file_key(
    description: dict, tensorrt_version: str, gpu_name: str, compute_capability: tuple[int, int],
    profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]], dtype: str,
) -> str:
    """The cache key of the engine built from the ONNX file that ``description`` (its sidecar) describes,
    by :func:`leaps_engine.export.cache.engine_cache_key`; ``dtype`` is the requested precision."""
    onnx_sha256 = description.get("sha256")
    if not onnx_sha256:
        raise LeapsError(f"the ONNX sidecar of {description.get('model', 'this model')} has no sha256; "
                         "delete the file from the cache to export it again")
    return engine_cache_key(onnx_sha256, tensorrt_version, gpu_name, tuple(compute_capability), profile, dtype)


def timing_cache_name(tensorrt_version: str, gpu_name: str, compute_capability: tuple[int, int],
                      dtype: str) -> str:
    """File name of the timing cache shared by every engine built with this TensorRT, GPU and precision."""
    key = digest({"tensorrt": tensorrt_version, "gpu": gpu_name, "sm": list(compute_capability), "dtype": dtype})
    return f"timing-{key[:16]}.cache"


def torch_dtype(trt_dtype_name: str) -> torch.dtype:
    """The torch dtype of a ``trt.DataType`` member, by name (``"HALF"`` -> ``torch.float16``)."""
    if trt_dtype_name not in TORCH_DTYPES:
        raise LeapsError(f"the tensorrt backend cannot bind a {trt_dtype_name} tensor")
    return TORCH_DTYPES[trt_dtype_name]


def build_engine(
    onnx_path: str | Path, profile: dict[str, tuple[tuple[int, ...], ...]], plan: PrecisionPlan,
    timing_cache_path: str | Path, logger: object, workspace_bytes: int = WORKSPACE_BYTES,
) -> bytes:
    """Build a serialized engine from ``onnx_path`` with one optimisation ``profile`` and ``plan``'s
    precision. The timing cache at ``timing_cache_path`` is read if present and written back after the
    build. Raises :class:`LeapsError` if the parser rejects the file or the build fails."""
    trt = require("tensorrt", "The tensorrt forward backend")
    onnx_path, timing_cache_path = Path(onnx_path), Path(timing_cache_path)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode since 10.0; 11.x is always strongly typed
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(" ".join(str(parser.get_error(i).desc()).split()) for i in range(parser.num_errors))
        raise LeapsError(f"TensorRT cannot parse {onnx_path.name}: {errors or 'no error reported'}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in plan.cleared_flags:
        if hasattr(trt.BuilderFlag, name):  # a flag this version lacks is off already
            config.clear_flag(getattr(trt.BuilderFlag, name))
    optimization_profile = builder.create_optimization_profile()
    for name, (smallest, opt, largest) in profile.items():
        optimization_profile.set_shape(name, smallest, opt, largest)
    config.add_optimization_profile(optimization_profile)

    saved = timing_cache_path.read_bytes() if timing_cache_path.is_file() else b""
    timing_cache = config.create_timing_cache(saved)
    if not config.set_timing_cache(timing_cache, ignore_mismatch=False):  # from another device: start afresh
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise LeapsError(f"TensorRT could not build an engine from {onnx_path.name} (its log above says why)")
    with atomic_path(timing_cache_path) as temporary:
        temporary.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


@dataclass
class EngineRunner:
    """A deserialized engine and its execution context (the runtime is kept alive with them)."""

    runtime: object
    engine: object
    context: object


class TensorRTForward(ExportedForward):
    """Runs the ONNX export with a TensorRT engine (see the module docstring)."""

    name = "tensorrt"

    def __init__(self, adapter: VideoAdapter, dtype: str | None = None, max_batch: int = DEFAULT_MAX_BATCH,
                 weights: str = "unknown"):
        super().__init__(adapter, dtype=dtype, max_batch=max_batch, weights=weights)
        self.device = next(adapter.parameters()).device
        if self.device.type != "cuda":
            raise LeapsError(f"the tensorrt backend needs a CUDA device ({adapter.name} is on {self.device}); "
                             "use --forward-backend onnxruntime or torch")
        self.trt = require("tensorrt", "The tensorrt forward backend")
        self.plan = precision_plan(self.trt.__version__, self.dtype)
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)  # builders and runtimes share one logger

    def onnx_dtype(self) -> str:
        return self.plan.onnx_dtype

    def load(self, path: Path, graph: GraphSpec, description: dict) -> EngineRunner:
        trt = self.trt
        profile = batch_profile((3, *graph.size), graph.max_batch)
        gpu_name = torch.cuda.get_device_name(self.device)
        capability = torch.cuda.get_device_capability(self.device)
        key = engine_file_key(description, trt.__version__, gpu_name, capability, profile, self.dtype)
        folder = cache_dir("tensorrt")
        engine_path = folder / artifact_name(self.adapter.name, graph.size, key, ".engine")
        with torch.cuda.device(self.device):
            if not engine_path.is_file():
                timing_path = folder / timing_cache_name(trt.__version__, gpu_name, capability, self.dtype)
                serialized = build_engine(path, profile, self.plan, timing_path, self.logger)
                with atomic_path(engine_path) as temporary:
                    temporary.write_bytes(serialized)
            runtime = trt.Runtime(self.logger)
            engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if engine is None:
                raise LeapsError(f"TensorRT cannot load the engine {engine_path}; delete it to build it again")
            context = engine.create_execution_context()
            if context is None:
                raise LeapsError(f"TensorRT cannot create an execution context for {engine_path.name} "
                                 "(out of GPU memory?)")
        return EngineRunner(runtime, engine, context)

    def execute(self, runner: EngineRunner, graph: GraphSpec, video: torch.Tensor) -> list[torch.Tensor]:
        engine, context = runner.engine, runner.context
        video = video.to(torch_dtype(engine.get_tensor_dtype(INPUT_NAME).name)).contiguous()
        with torch.cuda.device(video.device):
            if not context.set_input_shape(INPUT_NAME, tuple(video.shape)):
                raise LeapsError(f"the TensorRT engine of {self.adapter.name} rejects an input of shape "
                                 f"{tuple(video.shape)}")
            context.set_tensor_address(INPUT_NAME, video.data_ptr())
            outputs = []
            for name in graph.output_names:  # shapes known once the input shape is set
                output = torch.empty(tuple(context.get_tensor_shape(name)),
                                     dtype=torch_dtype(engine.get_tensor_dtype(name).name), device=video.device)
                context.set_tensor_address(name, output.data_ptr())
                outputs.append(output)
            if not context.execute_async_v3(torch.cuda.current_stream(video.device).cuda_stream):
                raise LeapsError(f"the TensorRT engine of {self.adapter.name} failed to run "
                                 "(its log above says why)")
        return [output.float() for output in outputs]
