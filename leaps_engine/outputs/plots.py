"""The report's plots, drawn with matplotlib and returned as inline SVG text.

Figures are built with :class:`matplotlib.figure.Figure` (no pyplot, so no global figure state) and
saved with text kept as text (``svg.fonttype: none``) and without a creation date, so the page stays
small and searchable; a ``$`` in a label is escaped, so it is not read as mathtext. Every
function returns an ``<svg>`` element without the XML prologue, ready to place inside HTML.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib
from matplotlib.figure import Figure

# (history key, panel title): the loss terms of result.json's history, then the target probability.
HISTORY_PANELS = (
    ("total", "total (the optimised sum)"),
    ("ce", "CE (nats)"),
    ("priming", "priming L_prim"),
    ("coherence", "R_coh"),
    ("feature", "R_feat"),
    ("prior", "pixel prior (baselines)"),
    ("target_prob", "p(target), model"),
)
LATENCY_PANELS = (("forward_ms", "forward"), ("backward_ms", "backprop"), ("step_ms", "step"))
STYLE = {"svg.fonttype": "none", "font.size": 8, "axes.titlesize": 9,
         "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False}


def to_svg(figure: Figure) -> str:
    """``figure`` as an inline ``<svg>`` element (the XML declaration and DOCTYPE dropped)."""
    buffer = io.StringIO()
    with matplotlib.rc_context(STYLE):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Creator": None, "Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def history_svg(histories: Sequence[dict[str, Sequence[float]]], labels: Sequence[str]) -> str:
    """Per-step loss terms and target probability of each video, one line per video, one panel per
    :data:`HISTORY_PANELS` entry (log scale where every value is positive and they span over a decade).

    Args:
        histories: one result.json ``history`` per video (term -> per-step values).
        labels: one legend label per video.
    """
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(11, 4.6), layout="constrained")
        axes = figure.subplots(2, 4).flatten()
        for axis, (key, title) in zip(axes, HISTORY_PANELS, strict=False):
            for history, label in zip(histories, labels, strict=True):
                values = history.get(key) or []
                axis.plot(range(1, len(values) + 1), values, linewidth=1, label=_plain(label))
            axis.set_title(title)
            axis.set_xlabel("step")
            _log_if_wide(axis, [value for history in histories for value in history.get(key) or []])
        legend_axis = axes[-1]
        legend_axis.axis("off")
        handles, names = axes[0].get_legend_handles_labels()
        legend_axis.legend(handles, names, loc="center left", fontsize=7)
        return to_svg(figure)


def _plain(text: str) -> str:
    """``text`` shown as written: matplotlib reads ``$...$`` as mathtext."""
    return text.replace("$", r"\$")


def _log_if_wide(axis: matplotlib.axes.Axes, values: list[float]) -> None:
    finite = [value for value in values if math.isfinite(value)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 10:
        axis.set_yscale("log")


def latency_svg(rows: Sequence[dict], model: str) -> str:
    """Latency per resolution and backend for one model, in the layout of the paper's Table 4: one panel
    each for forward, backprop and step (milliseconds per iteration, medians, log scale), one line per
    backend (and dtype, where several) across the resolutions in the order measured.

    Args:
        rows: ``bench --format json`` rows (:class:`~leaps_engine.engine.latency.BenchRow` fields) of
            ``model``; skipped rows are left out.
    """
    measured = [row for row in rows if not row.get("skipped")]
    resolutions = list(dict.fromkeys(row["resolution"] for row in measured))
    several_dtypes = len({row["dtype"] for row in measured}) > 1
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(11, 3.2), layout="constrained")
        axes = figure.subplots(1, len(LATENCY_PANELS), sharey=True)
        for axis, (field, title) in zip(axes, LATENCY_PANELS, strict=True):
            series: dict[str, dict[str, float]] = {}
            for row in measured:
                if row.get(field):
                    name = f"{row['backend']} ({row['dtype']})" if several_dtypes else row["backend"]
                    series.setdefault(name, {})[row["resolution"]] = row[field]
            for name, points in series.items():
                xs = [resolutions.index(resolution) for resolution in points]
                axis.plot(xs, list(points.values()), marker="o", linewidth=1, label=_plain(name))
            axis.set_xticks(range(len(resolutions)), resolutions, rotation=30)
            axis.set_title(_plain(f"{model}: {title}"))
            axis.set_xlabel("x* size (T x H x W)")
            if series:
                axis.set_yscale("log")
                axis.legend(fontsize=7)
        axes[0].set_ylabel("ms per iteration")
        return to_svg(figure)
