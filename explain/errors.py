"""The core's errors: what a caller can act on, kept free of onnxruntime and torch imports."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A model version that cannot be served as asked (files that disagree, a limit beyond
    the model's); the message names both sides."""


class PrepareError(ValueError):
    """A request the explainer cannot take (a limit beyond the model's); it fails alone."""
