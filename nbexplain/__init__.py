"""nbexplain: see why a PyTorch vision model decides what it decides, live in a notebook."""

from . import methods as _methods  # noqa: F401  (registers the methods)
from . import render, samples
from .engine.context import Cancelled
from .engine.explainer import Explainer
from .engine.registry import Param
from .engine.registry import get as method_info
from .engine.registry import methods
from .engine.targets import Prediction
from .explanation import Explanation

__all__ = [
    "Cancelled",
    "Explainer",
    "Explanation",
    "Param",
    "Prediction",
    "method_info",
    "methods",
    "render",
    "samples",
]
__version__ = "0.1.0"
