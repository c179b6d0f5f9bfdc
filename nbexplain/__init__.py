"""nbexplain: see why a PyTorch vision model decides what it decides, live in a notebook."""

from . import methods as _methods  # noqa: F401  (registers the methods)
from . import render, samples
from .engine.context import Cancelled
from .engine.explainer import Explainer
from .engine.explanation import Explanation
from .engine.grid import tokens
from .engine.registry import Param, methods
from .engine.registry import get as method_info
from .engine.targets import Prediction

__all__ = [
    "Cancelled",
    "Compare",
    "Explainer",
    "Explanation",
    "Explorer",
    "Param",
    "Prediction",
    "method_info",
    "methods",
    "render",
    "samples",
    "tokens",
]
__version__ = "0.1.0"

_WIDGETS = {"Explorer": "explorer", "Compare": "compare"}


def __getattr__(name: str):
    """``Explorer`` and ``Compare`` load the widget code (ipywidgets, anywidget) on first use,
    so ``import nbexplain`` stays light and works without a notebook."""
    if name in _WIDGETS:
        from importlib import import_module

        value = getattr(import_module(f".widgets.{_WIDGETS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_WIDGETS})
