"""Synthesis settings: one dataclass holding every default, and per-model presets (paper Table S1).

``SynthesisConfig.from_preset(name, **overrides)`` starts from the model's preset; overrides that are
``None`` are ignored, so unset CLI options pass straight through.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from leaps_engine.errors import LeapsError
from leaps_engine.kernels.launch_plans import PRIMING_DISTANCES

BN_STATS_MODES = ("video", "batch")
METHODS = ("leaps", "deepdream", "am")
OBJECTIVES = ("full", "prim", "prim+coh", "prim+feat")
# x* as pixels (the paper), as a space-time spectrum, as the stimulus's first frame moved by a displacement field,
# or as that frame's objects, each moved as a whole
PARAMETERIZATIONS = ("pixel", "fourier", "warp", "layers")
MOVING_PARAMETERIZATIONS = ("warp", "layers")  # those that move the first frame of a stimulus
MAX_LAYERS = 8  # the layers parameterisation's most layers: the largest objects of the frame
DTYPES = ("auto", "float32", "bfloat16", "float16")
KERNEL_BACKENDS = ("auto", "triton", "compile", "eager")
FORWARD_BACKENDS = ("torch", "onnxruntime", "tensorrt")  # the forward-only pass (leaps_engine.export.backends)
BENCH_BACKENDS = ("reference", "eager", "compiled", "fused", "cuda-graphs")  # step implementations timed
TABLE4_SIZES = ((8, 182, 182), (8, 224, 224), (16, 224, 224))  # x* sizes [T, H, W] of the paper's Table 4
TABLE_FORMATS = ("md", "csv", "json")  # tables printed by bench, evaluate and sweep report
EXPORT_FORMATS = ("onnx", "aoti")
EXPORT_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class Preset:
    """Per-model hyper-parameters: priming weights, regulariser scale, verifier, and run defaults.

    ``source`` says where the values come from (a Table S1 row, or the row they are borrowed from).
    ``settings`` are further :class:`SynthesisConfig` values the model's default run uses beyond the
    paper's (e.g. a space-time prior); ``from_preset(..., paper=True)`` leaves them out.
    """

    lambda_first: float
    lambda_last: float
    r: float
    verifier: str | None
    source: str
    steps: int = 2000
    size: tuple[int, int, int] = (8, 224, 224)
    settings: tuple[tuple[str, object], ...] = ()


def _table_s1(lambda_first: float, lambda_last: float, r: float, row: str) -> Preset:
    return Preset(lambda_first, lambda_last, r, verifier="x3d_s", source=f"Table S1, {row}")


def _borrowed(lambda_first: float, lambda_last: float, r: float, row: str) -> Preset:
    return Preset(lambda_first, lambda_last, r, verifier="x3d_s", source=f"not in Table S1; borrowed from {row}")


PRESETS: dict[str, Preset] = {
    # pytorchvideo models: Table S1 rows.
    "slow_r50": _table_s1(1.0, 0.3, 7.5e-3, "3D R50"),
    "r2plus1d_r50": _table_s1(0.75, 0.1, 5e-3, "(2+1)D R50"),
    "csn_r101": _borrowed(1.0, 0.2, 5e-3, "CSN R50"),
    "x3d_xs": _table_s1(1.0, 0.2, 1e-3, "X3D-XS"),
    "x3d_s": _table_s1(1.0, 0.1, 1e-3, "X3D-S"),
    "x3d_m": _table_s1(0.75, 0.1, 1e-3, "X3D-M"),
    "x3d_l": _table_s1(0.75, 0.1, 1e-3, "X3D-L"),
    "mvit_base_16x4": _borrowed(0.75, 0.1, 1e-3, "MViTv2-B"),
    # torchvision models.
    "r3d_18": _borrowed(1.0, 0.3, 7.5e-3, "3D R50"),
    "mc3_18": _borrowed(1.0, 0.3, 7.5e-3, "3D R50"),
    "r2plus1d_18": _borrowed(0.75, 0.1, 5e-3, "(2+1)D R50"),
    "s3d": _borrowed(1.0, 0.2, 5e-3, "CSN R50"),
    "mvit_v1_b": _borrowed(0.75, 0.1, 1e-3, "MViTv2-B"),
    "mvit_v2_s": _table_s1(0.75, 0.1, 2.5e-3, "MViTv2-S"),
    "swin3d_t": _table_s1(0.75, 0.2, 1e-3, "Video Swin-T"),
    "swin3d_s": _table_s1(0.75, 0.1, 1e-3, "Video Swin-S"),
    "swin3d_b": _table_s1(0.625, 0.1, 1e-3, "Video Swin-B"),
}

EMBEDDED_PRESET = Preset(
    lambda_first=0.5,
    lambda_last=0.1,
    r=1e-6,
    verifier="embedded_verifier",
    source="tuned for the embedded models by `leaps-engine tune` (benchmarks/results/tune_embedded)",
    steps=300,
    size=(8, 32, 32),
    # The best setting of the priors table (benchmarks/results/priors_embedded.md); --paper leaves it out.
    settings=(("parameterization", "layers"), ("moving_layers", 2), ("restarts", 4), ("motion_sparsity", 0.15)),
)
PRESETS["embedded"] = EMBEDDED_PRESET
PRESETS["embedded_verifier"] = dataclasses.replace(EMBEDDED_PRESET, verifier="embedded")
PRESETS["embedded_evaluator"] = dataclasses.replace(EMBEDDED_PRESET, verifier="embedded")

# Used for a registered model without a preset of its own.
DEFAULT_PRESET = Preset(1.0, 0.2, 1e-3, verifier="x3d_s", source="generic default")


@dataclass
class SynthesisConfig:
    """Every setting of one synthesis run.

    Attributes:
        steps: Adam updates (paper: 2,000).
        size: (T, H, W) of the synthesized video x* (paper: 8 x 224 x 224). Fixed-size models see x*
            resized to their own size.
        lr, betas: Adam settings (paper: 0.2; DeepInversion's betas (0.5, 0.9)); the learning rate
            decays to 0 along a cosine over the run.
        lambda_first, lambda_last: priming weights of the first and last tap; the others fall linearly
            in between (Supp. S2).
        r: scale of the regularisers, ``L = CE + L_prim + r * (R_coh + R_feat)``.
        distance: priming distance, ``jvs`` (paper), ``cos``, ``l1`` or ``l2`` (Table 2 ablation).
        priming_layers: share of the taps used for priming, the first ones in forward order (Supp. S4).
        coherence_margin: the hinge margin delta of R_coh (paper: 1).
        bn_stats: ``video`` (statistics per synthesized video, the default) or ``batch`` (DeepInversion).
        parameterization: how x* is optimised: ``pixel`` (its pixels, the paper's), ``fourier`` (a
            space-time spectrum in decorrelated colour, mapped to pixels by a sigmoid), ``warp`` (the first
            frame of the stimulus, held, moved by an optimised displacement field) or ``layers`` (the objects
            of that frame, each moved as a whole by an optimised similarity motion); ``warp`` and ``layers``
            need a stimulus, for the baselines too; see :mod:`leaps_engine.engine.parameterization` and
            :mod:`leaps_engine.engine.motion_layers`.
        init_scale: standard deviation of the start (``pixel``: in the model's normalised space, paper 1;
            ``fourier``: before the sigmoid, default 0.6; ``warp``: of the velocities, in pixels per frame,
            default 0.1; ``layers``: of the velocities, in pixels, radians and log-scale per frame, default
            0.1); ``None``: the parameterisation's default.
        moving_layers: ``layers`` only: how many of the largest layers move, 1 to ``MAX_LAYERS`` (default:
            all); the smaller ones stay still.
        motion_sparsity: ``layers`` only (the others ignore it): after each step every velocity is
            soft-thresholded toward zero by this share of the step's learning rate (the proximal step of an
            L1 penalty on the velocities, as for a plain gradient step), so that motion the objective does
            not keep asking for fades (default 0: off).
        warp_grid: ``warp`` only: control points per side of the displacement field (coarser: larger
            regions move as one).
        spatial_decay, temporal_decay: ``fourier`` only: the powers of the spatial and the temporal
            frequency that the amplitudes fall with (0: white; 1: Lucid's 1/f).
        jitter: largest random spatial shift, in pixels, applied to x* before each forward (0: off).
        scale_jitter: largest random zoom, as a fraction (0.1: between 0.9x and 1.1x), applied to x* about
            its centre before each forward (0: off).
        time_shift: largest random circular shift along time, in frames, before each forward (0: off).
            No transformation reverses time or mirrors x*: either would change what a motion class is.
        restarts: starting points per video (1: the paper's single run): the video is optimised from each
            at once, as that many rows of the batch, and the one with the lowest loss at the last step is
            kept; see :mod:`leaps_engine.engine.restarts`.
        flip: random horizontal flip of x* before each forward (off: it turns "moving left" into "moving
            right"; kept for classes without a direction).
        seed: seed of the first video; video ``i`` of a batch uses ``seed + i`` unless its target sets one.
        method: ``leaps`` (the paper's method), or a baseline of Table 1 that primes with no stimulus:
            ``deepdream`` (CE + ``tv_weight`` * total variation over t, h, w + ``l2_weight`` * L2 of x*)
            or ``am`` (activation maximisation: minus the target logit + ``l2_weight`` * L2 of x*).
        objective: which LEAPS terms are on (Table 3): ``full`` (CE + L_prim + r (R_coh + R_feat)),
            ``prim`` (CE + L_prim), ``prim+coh`` or ``prim+feat``.
        tv_weight, l2_weight: weights of the baselines' pixel priors (means over the video's values).
    """

    steps: int = 2000
    size: tuple[int, int, int] = (8, 224, 224)
    lr: float = 0.2
    betas: tuple[float, float] = (0.5, 0.9)
    lambda_first: float = 1.0
    lambda_last: float = 0.2
    r: float = 1e-3
    distance: str = "jvs"
    priming_layers: float = 1.0
    coherence_margin: float = 1.0
    bn_stats: str = "video"
    parameterization: str = "pixel"
    init_scale: float | None = None
    spatial_decay: float = 1.0
    temporal_decay: float = 1.0
    moving_layers: int = MAX_LAYERS
    motion_sparsity: float = 0.0
    warp_grid: int = 8
    jitter: int = 0
    scale_jitter: float = 0.0
    time_shift: int = 0
    restarts: int = 1
    flip: bool = False
    seed: int = 0
    method: str = "leaps"
    objective: str = "full"
    tv_weight: float = 0.05
    l2_weight: float = 0.005
    preset_source: str = field(default="", compare=False)

    @property
    def primes(self) -> bool:
        """Whether the method primes with stimulus videos (LEAPS does; the baselines do not)."""
        return self.method == "leaps"

    @property
    def uses_stimulus(self) -> bool:
        """Whether a run needs stimulus videos: to prime with (LEAPS), or to start from (``warp``, ``layers``)."""
        return self.primes or self.parameterization in MOVING_PARAMETERIZATIONS

    @classmethod
    def from_preset(cls, model_name: str, paper: bool = False, **overrides: object) -> SynthesisConfig:
        """The preset of ``model_name`` (Table S1 values and the preset's further ``settings``), with the
        non-``None`` ``overrides`` applied. ``paper=True`` leaves the preset's further settings out: the
        paper's method (pixels, no transformations), still with the preset's weights, steps and size."""
        preset = preset_for(model_name)
        config = cls(
            steps=preset.steps,
            size=preset.size,
            lambda_first=preset.lambda_first,
            lambda_last=preset.lambda_last,
            r=preset.r,
            preset_source=preset.source,
        )
        settings = {} if paper else dict(preset.settings)
        return dataclasses.replace(config, **settings).replace(**overrides)

    def replace(self, **overrides: object) -> SynthesisConfig:
        """A copy with the non-``None`` overrides applied, validated."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown SynthesisConfig fields: {', '.join(unknown)}")
        changed = dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})
        changed.validate()
        return changed

    def validate(self) -> None:
        """Raise :class:`LeapsError` naming the first setting that cannot work."""
        if self.steps < 1:
            raise LeapsError(f"steps must be >= 1, got {self.steps}")
        if len(self.size) != 3 or min(self.size) < 1:
            raise LeapsError(f"size must be three positive integers T x H x W, got {self.size}")
        if self.lr <= 0:
            raise LeapsError(f"lr must be > 0, got {self.lr}")
        if self.distance not in PRIMING_DISTANCES:
            raise LeapsError(f"unknown distance {self.distance!r}; expected one of {', '.join(PRIMING_DISTANCES)}")
        if not 0.0 < self.priming_layers <= 1.0:
            raise LeapsError(f"priming_layers must be in (0, 1], got {self.priming_layers}")
        if self.bn_stats not in BN_STATS_MODES:
            raise LeapsError(f"bn_stats must be one of {', '.join(BN_STATS_MODES)}, got {self.bn_stats!r}")
        if self.method not in METHODS:
            raise LeapsError(f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.objective not in OBJECTIVES:
            raise LeapsError(f"unknown objective {self.objective!r}; expected one of {', '.join(OBJECTIVES)}")
        if self.method != "leaps" and self.objective != "full":
            raise LeapsError(f"--objective {self.objective} is a LEAPS ablation; it does not apply to {self.method}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise LeapsError(f"unknown parameterization {self.parameterization!r}; expected one of "
                             f"{', '.join(PARAMETERIZATIONS)}")
        if self.parameterization in MOVING_PARAMETERIZATIONS and self.size[0] < 2:
            raise LeapsError(f"the {self.parameterization} parameterisation moves a frame over time and needs at "
                             f"least 2 frames, got size {self.size} (for one frame, use parameterization pixel or "
                             "fourier)")
        if not 1 <= self.moving_layers <= MAX_LAYERS:
            raise LeapsError(f"moving_layers must be in 1..{MAX_LAYERS}, got {self.moving_layers}")
        if self.restarts < 1:
            raise LeapsError(f"restarts must be >= 1, got {self.restarts}")
        if self.restarts > 1 and self.bn_stats == "batch":
            raise LeapsError("bn_stats 'batch' pools BatchNorm statistics over the batch, which would mix a video's "
                             "restarts: use one restart, or bn_stats 'video'")
        if self.warp_grid < 1:
            raise LeapsError(f"warp_grid must be >= 1, got {self.warp_grid}")
        if self.init_scale is not None and self.init_scale <= 0:
            raise LeapsError(f"init_scale must be > 0, got {self.init_scale}")
        if not 0 <= self.scale_jitter < 1:
            raise LeapsError(f"scale_jitter must be in [0, 1), got {self.scale_jitter}")
        if self.time_shift < 0 or 0 < self.size[0] <= self.time_shift:
            raise LeapsError(f"time_shift must be in [0, {self.size[0] - 1}] for {self.size[0]} frames, "
                             f"got {self.time_shift}")
        for name in ("lambda_first", "lambda_last", "r", "coherence_margin", "jitter", "tv_weight", "l2_weight",
                     "spatial_decay", "temporal_decay", "motion_sparsity"):
            if not getattr(self, name) >= 0:  # NaN too
                raise LeapsError(f"{name} must be >= 0, got {getattr(self, name)}")


# The SynthesisConfig fields that a run may override: each is one option of the command line
# (leaps_engine.cli.options.setting_options) and one column of a sweep manifest (leaps_engine.sweep.manifest,
# in this order); the other fields keep their defaults. A new setting: a field above, its name here, an option.
SETTING_FIELDS = ("seed", "steps", "size", "method", "objective", "distance", "priming_layers", "lambda_first",
                  "lambda_last", "r", "parameterization", "init_scale", "spatial_decay", "temporal_decay",
                  "moving_layers", "motion_sparsity", "warp_grid", "jitter", "scale_jitter", "time_shift",
                  "restarts")


def preset_for(model_name: str) -> Preset:
    """The preset of ``model_name`` (the generic default for models without one)."""
    return PRESETS.get(model_name, DEFAULT_PRESET)


@dataclass(frozen=True)
class Acceleration:
    """How the synthesis step runs; none of these settings changes the method, only its speed.

    Attributes:
        dtype: autocast precision of the networks, ``auto`` (bfloat16 on CUDA, float32 on the CPU),
            ``float32``, ``bfloat16`` or ``float16`` (with loss scaling). The losses are always float32.
        channels_last: run the networks on channels-last (NDHWC) tensors.
        compile: ``torch.compile`` the whole objective (forward, losses, backward), one graph per shape.
        cuda_graphs: also capture the compiled step in CUDA graphs (CUDA only; implies ``compile``).
        kernels: implementation of the JVS priming and BN-statistics losses: ``auto`` (Triton on CUDA,
            else the compiled reference, else eager), ``triton``, ``compile`` or ``eager``.
    """

    dtype: str = "auto"
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    kernels: str = "auto"

    @property
    def resolved(self) -> bool:
        """Whether this is a record from :meth:`resolve` (a concrete dtype; compile on with CUDA graphs)."""
        return self.dtype != "auto" and (self.compile or not self.cuda_graphs)

    def resolve(self, device_type: str) -> Acceleration:
        """The settings made concrete for a device (``"cpu"``, ``"cuda"``): ``auto`` becomes bfloat16 on CUDA
        and float32 elsewhere, CUDA graphs turn compile on. The run resolves once and every part of it
        (the step, the loss scaler, result.json) reads the record. Resolving a resolved record changes
        nothing.

        Raises:
            LeapsError: an unknown dtype or kernel backend, or CUDA graphs asked for off CUDA.
        """
        self.validate()
        if self.cuda_graphs and device_type != "cuda":
            raise LeapsError(f"--cuda-graphs needs a CUDA device, got {device_type}")
        dtype = self.dtype if self.dtype != "auto" else ("bfloat16" if device_type == "cuda" else "float32")
        return dataclasses.replace(self, dtype=dtype, compile=self.compile or self.cuda_graphs)

    def validate(self) -> None:
        """Raise :class:`LeapsError` naming the first setting that cannot work."""
        if self.dtype not in DTYPES:
            raise LeapsError(f"unknown dtype {self.dtype!r}; expected one of {', '.join(DTYPES)}")
        if self.kernels not in KERNEL_BACKENDS:
            raise LeapsError(f"unknown kernels {self.kernels!r}; expected one of {', '.join(KERNEL_BACKENDS)}")
