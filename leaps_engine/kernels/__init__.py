"""Fused loss reductions, one file per loss: the pure-torch reference first, then the fast paths.

* :mod:`leaps_engine.kernels.priming`: channel mean of a tap + Jaccard vector similarity (Eq. 1).
* :mod:`leaps_engine.kernels.bn_stats`: per-video channel mean/variance + BatchNorm-statistics distance (Eq. 3).
"""
