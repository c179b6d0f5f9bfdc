"""Layer-wise relevance propagation: rules, composites, structure, and the ``lrp`` method."""

from . import method  # noqa: F401  (registers "lrp")
from .canonize import UnsupportedModel
from .composites import COMPOSITES, Composite, Settings
from .propagate import attached, relevance

__all__ = ["COMPOSITES", "Composite", "Settings", "UnsupportedModel", "attached", "relevance"]
