"""What runs leave on disk: :mod:`~leaps_engine.outputs.video` writes videos, sheets and tensors;
:mod:`~leaps_engine.outputs.results` writes and reads the result folder (the ``result.json`` schema).

The engine never imports this package: it returns tensors and results, and the layers above write them.
"""
