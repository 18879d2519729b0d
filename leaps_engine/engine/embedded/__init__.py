"""The embedded domain: procedural action clips and two small classifiers trained on them.

``generator`` renders clips of 12 motion classes, ``networks`` defines the classifier and the verifier,
``train`` retrains their shipped weights (``weights/``) from a seed on a CPU in minutes.
"""
