"""The ONNX Runtime forward backend: CPU everywhere, CUDA and TensorRT execution providers on a GPU.

On a CUDA device the session gets the provider list TensorRT EP -> CUDA EP -> CPU (those the installed
package has; unsupported nodes fall back along the list), and inputs and outputs are torch tensors bound
in place with IO binding, so nothing is copied through the host. On the CPU, tensors go through numpy.
The TensorRT EP keeps its engines and timing cache under the leaps-engine cache folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from leaps_engine._features import require
from leaps_engine.errors import LeapsError, one_line
from leaps_engine.export._exported import ExportedForward
from leaps_engine.export.cache import cache_dir
from leaps_engine.export.graph import INPUT_NAME, GraphSpec

NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16}
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def provider_list(device: torch.device, available: list[str], dtype: str, trt_cache: str) -> list:
    """Execution providers for a session on ``device``, best first, limited to the ``available`` ones.

    Each entry is a name or ``(name, options)``: the CUDA EP is pinned to the device's index, and the
    TensorRT EP gets its engine and timing caches and its precision flag.
    """
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    index = device.index if device.index is not None else torch.cuda.current_device()
    options = {
        "TensorrtExecutionProvider": {"device_id": index, "trt_engine_cache_enable": True,
                                      "trt_engine_cache_path": trt_cache, "trt_timing_cache_enable": True,
                                      "trt_timing_cache_path": trt_cache, "trt_fp16_enable": dtype == "float16",
                                      "trt_bf16_enable": dtype == "bfloat16"},
        "CUDAExecutionProvider": {"device_id": index},
    }
    chosen = [(name, options[name]) for name in GPU_PROVIDERS if name in available]
    if not chosen:
        raise LeapsError("onnxruntime on CUDA needs the onnxruntime-gpu package (only the CPU provider is "
                         "installed): pip install 'leaps-engine[gpu]'")
    return [*chosen, "CPUExecutionProvider"]


class OnnxRuntimeForward(ExportedForward):
    """Runs the ONNX export with ONNX Runtime (see the module docstring)."""

    name = "onnxruntime"

    def onnx_dtype(self) -> str:
        if self.dtype not in NUMPY_DTYPES:
            raise LeapsError(f"the onnxruntime backend runs float32 or float16, not {self.dtype}")
        return self.dtype

    def load(self, path: Path, graph: GraphSpec, description: dict) -> object:
        ort = require("onnxruntime", "The onnxruntime forward backend")
        device = next(self.adapter.parameters()).device
        providers = provider_list(device, ort.get_available_providers(), self.dtype, str(cache_dir("tensorrt")))
        try:
            return ort.InferenceSession(str(path), providers=providers)
        except Exception as error:  # ORT raises its own exception types
            raise LeapsError(f"ONNX Runtime cannot load {path.name}: {one_line(error)}") from None

    def execute(self, runner: object, graph: GraphSpec, video: torch.Tensor) -> list[torch.Tensor]:
        video = video.to(graph.torch_dtype).contiguous()
        try:
            if video.device.type == "cuda":
                return self._execute_bound(runner, graph, video)
            outputs = runner.run(list(graph.output_names), {INPUT_NAME: video.numpy()})
        except LeapsError:
            raise
        except Exception as error:  # ORT raises its own exception types
            raise LeapsError(f"ONNX Runtime failed to run {self.adapter.name}: {one_line(error)}") from None
        return [torch.from_numpy(value).float() for value in outputs]

    def _execute_bound(self, session, graph: GraphSpec, video: torch.Tensor) -> list[torch.Tensor]:
        """IO binding: ORT reads the input and writes the outputs in place in CUDA torch tensors."""
        element_type = NUMPY_DTYPES[graph.dtype]
        index = video.device.index if video.device.index is not None else torch.cuda.current_device()
        binding = session.io_binding()
        binding.bind_input(INPUT_NAME, "cuda", index, element_type, tuple(video.shape), video.data_ptr())
        outputs = []
        for meta in session.get_outputs():
            shape = (video.shape[0], *meta.shape[1:])
            if not all(isinstance(s, int) for s in shape):
                raise LeapsError(f"output {meta.name} of {self.adapter.name} has no static shape: {meta.shape}")
            output = torch.empty(shape, dtype=graph.torch_dtype, device=video.device)
            binding.bind_output(meta.name, "cuda", index, element_type, tuple(shape), output.data_ptr())
            outputs.append(output)
        torch.cuda.current_stream(video.device).synchronize()  # ORT runs on its own stream
        session.run_with_iobinding(binding)
        return [output.float() for output in outputs]
