"""Forward-only acceleration: export to ONNX and AOTInductor, and the forward backends that run it.

Synthesis needs input gradients, so it always runs in torch; what these modules speed up is every
forward-only pass (stimulus features, scoring videos, the forward column of ``leaps-engine bench``).
Nothing here imports ``onnx``, ``onnxruntime`` or ``tensorrt`` until it is used, so ``import
leaps_engine`` never needs them.
"""
