"""Notebook widgets: ``Explorer``, ``Compare`` and the ``HeatmapCanvas`` they draw on.

The widgets import the engine; the engine never imports them (``tests/test_imports.py``).
"""

from .canvas import HeatmapCanvas
from .compare import Compare
from .explorer import Explorer

__all__ = ["Compare", "Explorer", "HeatmapCanvas"]
