"""Forward and backprop latency of one synthesis step (paper Table 4), per backend.

Backends:

* ``reference``: behaves like the authors' released loop: eager, weight gradients on, taps through
  forward hooks installed on every call, the verifier run as a second forward pass (even when it is
  the inverted model itself), float16 autocast with loss scaling on CUDA, float32 on the CPU;
* ``eager``: the lean step of :mod:`leaps_engine.engine.step` (frozen weights, one pass when the model
  is its own verifier, the chosen dtype);
* ``compiled``: the lean step under ``torch.compile`` (the losses compiled with it);
* ``fused``: the compiled lean step with the Triton loss kernels (CUDA only);
* ``cuda-graphs``: ``fused``, its graphs also captured in CUDA graphs (``mode="reduce-overhead"``;
  CUDA only).

One iteration is forward (x* -> every loss term), backward (input gradient), and the Adam update with
the pixel clamp. :func:`measure_forward_latency` times the forward-only work instead (logits of a batch,
no gradients) through a forward backend: torch, ONNX Runtime or TensorRT. Each phase is timed between
device synchronisations; warm-up (and compilation) is timed separately and never mixed into the figures;
peak memory is taken over two more iterations.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from leaps_engine.config import BENCH_BACKENDS, Acceleration, SynthesisConfig, preset_for
from leaps_engine.engine import objectives
from leaps_engine.engine.adapters import create_adapter, get_adapter_entry
from leaps_engine.engine.adapters.base import VideoAdapter, record_inputs
from leaps_engine.engine.forward import ForwardBackend
from leaps_engine.engine.step import (
    LeapsObjective,
    coherence_tap,
    priming_taps,
    to_verifier_space,
    verifier_bn_layers,
)
from leaps_engine.engine.synthesis import seconds_since
from leaps_engine.errors import LeapsError

COMPILED_BACKENDS = ("compiled", "fused", "cuda-graphs")
CUDA_BACKENDS = ("fused", "cuda-graphs")
MEMORY_ITERATIONS = 2  # untimed iterations after the timed ones, over which peak memory is measured


@dataclass
class BenchRow:
    """Latency of one (model, resolution, batch, backend, dtype); times in milliseconds per iteration."""

    model: str
    resolution: str  # "TxHxW"
    batch: int
    backend: str
    dtype: str
    device: str
    forward_ms: float | None = None  # medians over the timed iterations
    backward_ms: float | None = None
    step_ms: float | None = None
    forward_p10_ms: float | None = None
    forward_p90_ms: float | None = None
    backward_p10_ms: float | None = None
    backward_p90_ms: float | None = None
    step_p10_ms: float | None = None
    step_p90_ms: float | None = None
    iters_per_s: float | None = None
    peak_mem_mb: float | None = None  # peak allocated CUDA memory (None on the CPU)
    warmup_s: float | None = None  # warm-up iterations, compilation included
    iters: int = 0
    skipped: str | None = None  # why the row was not measured
    forward_only: bool = False  # a forward backend's row: logits without gradients, no backprop or step


def backend_problem(backend: str, device: torch.device) -> str | None:
    """Why ``backend`` cannot run on ``device``, or ``None``."""
    if backend not in BENCH_BACKENDS:
        raise LeapsError(f"unknown backend {backend!r}; expected one of {', '.join(BENCH_BACKENDS)}")
    if backend == "fused" and device.type != "cuda":
        return "the Triton kernels need CUDA"
    if backend == "cuda-graphs" and device.type != "cuda":
        return "CUDA graphs and the Triton kernels need CUDA"
    return None


def bench_weights(name: str, weights: str) -> str:
    """``default`` is random weights (latency does not depend on their values), or the embedded models'
    own; anything else is passed on."""
    if weights != "default":
        return weights
    return get_adapter_entry(name).bench_weights


def bench_verifier(model: VideoAdapter, choice: str, device: torch.device) -> VideoAdapter | None:
    """The R_feat network of a latency row: ``self`` (the model, when it has BatchNorm3d layers, as the
    authors' code runs it; otherwise the preset's verifier), ``preset`` or ``none``."""
    if choice == "none":
        return None
    has_batchnorm = any(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())
    if choice == "self" and has_batchnorm:
        return model
    name = preset_for(model.name).verifier
    if name is None:
        return None
    return create_adapter(name, weights=bench_weights(name, "default"), device=device)


def measure_latency(
    model: VideoAdapter,
    verifier: VideoAdapter | None,
    size: tuple[int, int, int],
    batch: int,
    backend: str,
    dtype: str,
    iters: int,
    warmup: int,
    on_iteration: Callable[[], None] | None = None,
) -> BenchRow:
    """Time ``iters`` synthesis steps of ``batch`` videos of ``size`` after ``warmup`` untimed ones.

    ``verifier`` may be ``model`` itself (the lean backends then run one forward pass for both).
    ``dtype`` (``float32``, ``bfloat16``, ``float16``) applies to the lean backends; ``reference`` uses
    its own (float16 on CUDA, float32 on the CPU).
    """
    device = next(model.parameters()).device
    step_dtype = ("float16" if device.type == "cuda" else "float32") if backend == "reference" else dtype
    row = BenchRow(model.name, "x".join(map(str, size)), batch, backend, step_dtype, str(device))
    problem = backend_problem(backend, device)
    if problem:
        row.skipped = problem
        return row
    config = SynthesisConfig.from_preset(model.name, size=size, steps=max(1, iters + warmup))
    video, targets, stimulus_means = _inputs(model, config, batch, device)
    if backend in COMPILED_BACKENDS:
        torch.compiler.reset()  # a fresh graph: past dynamo's recompile limit, earlier rows' graphs would make it eager
    cuda_graphs = backend == "cuda-graphs"
    with _step_for(backend, model, verifier, config, stimulus_means, targets, step_dtype) as step:
        optimizer = torch.optim.Adam([video], lr=config.lr, betas=config.betas, fused=device.type == "cuda")
        scaler = torch.amp.GradScaler(device.type, enabled=step_dtype == "float16")
        low, high = (bound.to(device) for bound in model.spec.pixel_bounds())

        started = time.perf_counter()
        for _ in range(warmup):
            _timed_iteration(step, video, optimizer, scaler, low, high, cuda_graphs)
            if on_iteration:
                on_iteration()
        row.warmup_s = round(seconds_since(started, device), 3)

        timings = []
        for _ in range(iters):
            timings.append(_timed_iteration(step, video, optimizer, scaler, low, high, cuda_graphs))
            if on_iteration:
                on_iteration()
        memory = _PeakMemory(device)  # separate iterations: resetting the statistics must not be timed
        with memory:
            for _ in range(MEMORY_ITERATIONS):
                _timed_iteration(step, video, optimizer, scaler, low, high, cuda_graphs)
    _fill_statistics(row, timings)
    row.peak_mem_mb = memory.peak_mb
    return row


def measure_forward_latency(
    forward: ForwardBackend | None, model: VideoAdapter, kind: str, size: tuple[int, int, int], batch: int,
    dtype: str, iters: int, warmup: int, problem: str | None = None,
    on_iteration: Callable[[], None] | None = None,
) -> BenchRow:
    """Time ``iters`` forward-only passes (logits of ``batch`` videos of ``size``) of the ``kind`` backend
    ``forward`` after ``warmup`` (at least one) untimed ones; the warm-up includes exporting, building and
    the check against eager. ``problem`` (why the backend cannot run here), or a :class:`LeapsError` in
    the warm-up (a failed export, build or check against eager), gives a skipped row that says why."""
    device = next(model.parameters()).device
    row = BenchRow(model.name, "x".join(map(str, size)), batch, kind, dtype, str(device), forward_only=True)
    if problem or forward is None:
        row.skipped = problem or "no backend"
        return row
    generator = torch.Generator().manual_seed(0)
    video = model.spec.normalize(torch.rand((batch, 3, *size), generator=generator)).to(device)
    started = time.perf_counter()
    for _ in range(max(1, warmup)):  # the first pass exports, builds and checks: never timed
        try:
            forward.logits(video)
        except LeapsError as error:
            row.skipped = str(error)
            return row
        if on_iteration:
            on_iteration()
    row.warmup_s = round(seconds_since(started, device), 3)
    timings = []
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        forward.logits(video)
        _sync(device)
        timings.append(((time.perf_counter() - start) * 1e3,))
        if on_iteration:
            on_iteration()
    _fill_statistics(row, timings, phases=("forward",))
    return row


def _inputs(model: VideoAdapter, config: SynthesisConfig, batch: int, device: torch.device):
    """x* noise ``[B, 3, T, H, W]``, targets ``[B]`` and stimulus embeddings from a noise stimulus."""
    generator = torch.Generator().manual_seed(0)
    video = torch.randn((batch, 3, *config.size), generator=generator).to(device).requires_grad_(True)
    targets = torch.arange(batch, device=device) % model.spec.num_classes
    stimulus = model.spec.normalize(torch.rand((1, 3, *config.size), generator=generator).to(device))
    with torch.no_grad():
        _, taps = model.forward_with_taps(stimulus, priming_taps(model, config))
    stimulus_means = [tap.float().mean(dim=(2, 3)).expand(batch, -1) for tap in taps]
    return video, targets, stimulus_means


def _step_for(backend, model, verifier, config, stimulus_means, targets, dtype):
    if backend == "reference":
        return ReferenceStep(model, verifier, config, stimulus_means, targets)
    acceleration = Acceleration(dtype=dtype, compile=backend in COMPILED_BACKENDS, cuda_graphs=backend == "cuda-graphs",
                                kernels="triton" if backend in CUDA_BACKENDS else "eager").resolve(targets.device.type)
    return LeapsObjective(model, verifier, config, stimulus_means, targets, acceleration)


def _timed_iteration(step, video, optimizer, scaler, low, high, cuda_graphs) -> tuple[float, float, float]:
    """One step; returns (forward, backward, whole step) in milliseconds."""
    device = video.device
    _sync(device)
    start = time.perf_counter()
    if cuda_graphs:
        torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs may be overwritten
    _, losses = step(video)
    _sync(device)
    forward_end = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses["total"].sum()).backward()
    _sync(device)
    backward_end = time.perf_counter()
    scaler.step(optimizer)
    scaler.update()
    with torch.no_grad():
        video.clamp_(low, high)
    _sync(device)
    end = time.perf_counter()
    return (forward_end - start) * 1e3, (backward_end - forward_end) * 1e3, (end - start) * 1e3


def _fill_statistics(
    row: BenchRow, timings: list[tuple[float, ...]], phases: tuple[str, ...] = ("forward", "backward", "step")
) -> None:
    """Median, p10 and p90 of each phase's times; iterations per second from the last phase's median."""
    row.iters = len(timings)
    for index, phase in enumerate(phases):
        values = sorted(t[index] for t in timings)
        setattr(row, f"{phase}_ms", round(statistics.median(values), 3))
        setattr(row, f"{phase}_p10_ms", round(_percentile(values, 0.1), 3))
        setattr(row, f"{phase}_p90_ms", round(_percentile(values, 0.9), 3))
    row.iters_per_s = round(1e3 / getattr(row, f"{phases[-1]}_ms"), 3)


def _percentile(sorted_values: list[float], q: float) -> float:
    position = q * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ReferenceStep:
    """The step as the authors' loop runs it (see the module docstring); a context manager like the
    lean step. Weight gradients are switched on for its lifetime and switched off again on exit."""

    def __init__(self, model, verifier, config, stimulus_means, targets):
        self.model = model
        self.verifier = verifier
        self.config = config
        self.priming_taps = priming_taps(model, config)
        all_weights = objectives.priming_weights(len(model.taps), config.lambda_first, config.lambda_last)
        self.weights = all_weights[: len(self.priming_taps)]
        self.coherence_tap = coherence_tap(model, config.size)
        self.stimulus_means = stimulus_means
        self.targets = targets
        self.bn_layers = verifier_bn_layers(verifier) if verifier is not None else []
        self.networks = list({id(n): n for n in (model, verifier) if n is not None}.values())

    def __enter__(self) -> ReferenceStep:
        for network in self.networks:
            network.model.requires_grad_(True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for network in self.networks:
            network.model.requires_grad_(False)
            network.zero_grad(set_to_none=True)

    def __call__(self, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        device_type = video.device.type
        with torch.autocast(device_type, dtype=torch.float16, enabled=device_type == "cuda"):
            tap_names = list(dict.fromkeys([*self.priming_taps, *filter(None, [self.coherence_tap])]))
            logits, tap_values = self.model.forward_with_taps(video, tap_names)
            bn_inputs = []
            if self.verifier is not None:
                with record_inputs(self.bn_layers) as bn_inputs:
                    self.verifier(to_verifier_space(self.model, self.verifier, video))
        taps = dict(zip(tap_names, tap_values, strict=True))
        ce = objectives.cross_entropy(logits, self.targets)
        priming = objectives.priming_loss([taps[t] for t in self.priming_taps], self.stimulus_means,
                                          self.weights, self.config.distance)
        coherence = (objectives.temporal_coherence(taps[self.coherence_tap], self.config.coherence_margin)
                     if self.coherence_tap else None)
        feature = objectives.feature_statistics_loss(bn_inputs) if bn_inputs else None
        return logits, objectives.compose("leaps", self.config.r, ce, priming=priming, coherence=coherence,
                                          feature=feature)


class _PeakMemory:
    """Peak allocated CUDA memory over a block, in MiB; ``None`` on other devices, where the caching
    allocators make resident-memory growth meaningless for one step."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mb: float | None = None

    def __enter__(self) -> _PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.device.type == "cuda":
            self.peak_mb = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
