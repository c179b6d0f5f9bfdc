"""Importing this package registers every method, in the order ``nbx.methods()`` lists them
(simple to elaborate: gradients, backprop rules, CAMs, units, perturbation, relevance)."""

from . import gradient, guided, cam, units, occlusion, ablation, lrp  # noqa: F401, I001
