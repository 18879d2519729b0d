"""Trace the lean step with the fused Triton losses under ``torch.compile(fullgraph=True)`` and print
``graphs priming_ops bn_statistics_ops``; run as a script by ``test_step.py``.

It runs in its own interpreter without ``TRITON_INTERPRET``, so the kernels are real Triton kernels
(as on CUDA) while the step is only traced: the backend records the graph and runs nothing. A graph
break anywhere in the step, the fused losses included, fails the trace.
"""

import contextlib
import os

os.environ.pop("TRITON_INTERPRET", None)

import torch  # noqa: E402

from leaps_engine import SynthesisConfig, create_adapter  # noqa: E402
from leaps_engine.config import Acceleration  # noqa: E402
from leaps_engine.engine.step import LeapsObjective, priming_taps  # noqa: E402
from leaps_engine.kernels import registry  # noqa: E402


class _Traced(Exception):
    """Raised instead of running the traced graph."""


def main() -> None:
    graphs = []

    def record(graph_module: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(graph_module)

        def do_not_run(*args: object) -> None:
            raise _Traced

        return do_not_run

    model = create_adapter("embedded")
    config = SynthesisConfig.from_preset("embedded", size=(8, 32, 32), steps=1)
    video = torch.randn((2, 3, *config.size))
    with torch.no_grad():
        _, taps = model.forward_with_taps(video, priming_taps(model, config))
    means = [tap.float().mean(dim=(2, 3)) for tap in taps]
    targets = torch.tensor([0, 1])
    with LeapsObjective(model, model, config, means, targets, Acceleration(kernels="eager", dtype="float32").resolve("cpu")) as step:
        step.kernels = registry.triton_kernels(registry.EAGER_KERNELS)  # real kernels, traced on the CPU
        with contextlib.suppress(_Traced):
            torch.compile(step._losses, backend=record, fullgraph=True)(video)
    targets = [str(node.target) for graph in graphs for node in graph.graph.nodes]
    print(len(graphs), sum("tap_priming_loss" in t for t in targets), sum("bn_statistics_loss" in t for t in targets))


if __name__ == "__main__":
    main()
