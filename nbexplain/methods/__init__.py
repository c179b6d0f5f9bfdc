"""Importing this package registers every method (in the order the widget lists them)."""

from . import gradient, guided, cam, units, occlusion, ablation, lrp  # noqa: F401
