"""Occlusion: the method, its window order, the dense and incremental evaluators, and the fx
runner that recomputes only what a window reaches (the one family with an engine of its own)."""

from ...engine.perturb import BASELINES, check_baseline, check_mask, occlude
from . import method  # noqa: F401  (registers "occlusion")

__all__ = ["BASELINES", "check_baseline", "check_mask", "occlude"]
