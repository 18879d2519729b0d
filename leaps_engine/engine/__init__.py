"""The engine: model adapters, objective terms, the synthesis loop, stimulus and video I/O."""
