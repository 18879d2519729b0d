"""Sweeps: many synthesis jobs described by a manifest, run in batches here or as Ray tasks, resumable.

:mod:`~leaps_engine.sweep.manifest` reads, writes and plans manifests; :mod:`~leaps_engine.sweep.batches`
runs one batch and writes its result folders atomically; :mod:`~leaps_engine.sweep.runner` decides what
still has to run and logs every attempt; :mod:`~leaps_engine.sweep.ray_executor` runs batches on Ray.
"""
