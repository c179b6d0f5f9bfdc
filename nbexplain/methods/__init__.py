"""Importing this package registers every method, in the order ``nbx.methods()`` lists them
(simple to elaborate: gradients, backprop rules, CAMs, units, perturbation, relevance, attention)."""

from . import gradient, guided, cam, units, occlusion, ablation, lrp, attention  # noqa: F401, I001
