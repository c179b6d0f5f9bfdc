"""``CachedExplainer``: an Explainer's calls as the widgets make them, with their results kept.

The policy of what one engine call answers lives in the registry: a method whose
``Method.all_layers`` is true is computed for every candidate layer at once, so the layer slider
only reads the cache afterwards.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from ..checks import check_count
from ..engine import registry
from ..engine.guard import model_lock
from .cache import CACHE_BYTES, LRUCache, explanation_bytes, freeze, mask_digest


class CachedExplainer:
    """An ``Explainer``'s calls with their results kept: explanations keyed by (image, method,
    target, params, layer), at most ``size`` of them and ``max_bytes`` of their tensors;
    predictions by (image, mask, baseline, topk).

    A method with ``Method.all_layers`` is computed for every candidate layer at once, so moving
    the layer slider afterwards only reads the cache: one with a ``combine`` (a layer's map from
    its activation and gradient: Grad-CAM, LayerCAM) through a ``LayerSession`` that keeps the
    image's forward pass (a new class costs one backward), others through ``explain_layers``
    (one forward and one backward). ``calls`` counts the engine calls made.
    """

    def __init__(self, explainer: Any, size: int = 256, max_bytes: int | None = CACHE_BYTES):
        check_count(size, "cache_size")
        self.explainer = explainer
        self.explanations = LRUCache(size, max_bytes, explanation_bytes)
        self.predictions = LRUCache(4 * size)
        self.calls: Counter[str] = Counter()
        self._session: tuple[Hashable, Any] | None = None  # (image, LayerSession)

    @staticmethod
    def explanation_key(image: Hashable, method: str, target: int | None, params: dict, layer: str | None):
        return (image, method, target, freeze(params), layer)

    def cached_explanation(self, key: tuple) -> Any:
        return self.explanations.get(key)

    def explain(
        self,
        image: Hashable,
        x: Any,
        method: str,
        target: int | None,
        params: dict,
        layer: str | None,
        *,
        progress: Callable | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Any:
        """The explanation (from the cache when it is there)."""
        key = self.explanation_key(image, method, target, params, layer)
        found = self.explanations.get(key)
        if found is not None:
            return found
        spec = registry.get(method)
        with model_lock(self.explainer.model):
            if spec.all_layers and layer in self.explainer.layers():
                try:
                    results = self._all_layers(image, x, spec, target, params, progress, should_stop)
                except ValueError:
                    results = {}  # a parameter that fits this layer only (a channel index): below
                for name, explanation in results.items():
                    self._store(image, method, target, params, name, explanation)
                if layer in results:
                    return results[layer]
            self.calls["explain"] += 1
            explanation = self.explainer.explain(
                x, method, target=target, layer=layer, progress=progress, should_stop=should_stop, **params
            )
        self._store(image, method, target, params, layer, explanation)
        return explanation

    def _all_layers(self, image, x, spec, target, params, progress, should_stop) -> dict[str, Any]:
        if spec.combine is not None:
            self.calls["session"] += 1
            return self.session(image, x).explain(spec.name, target, **params)
        self.calls["explain_layers"] += 1
        return self.explainer.explain_layers(
            x, spec.name, target=target, progress=progress, should_stop=should_stop, **params
        )

    def session(self, image: Hashable, x: Any) -> Any:
        """The kept forward pass of ``image`` (one at a time: a new image frees the old one).
        Its own result cache is off: ours keeps every result."""
        if self._session is None or self._session[0] != image:
            self.close()
            self._session = (image, self.explainer.layer_session(x, cache=0))
        return self._session[1]

    def close(self) -> None:
        """Free the kept forward pass."""
        if self._session is not None:
            self._session[1].close()
            self._session = None

    def clear(self) -> None:
        """Free the kept forward pass and every kept result (a closed widget holds no memory)."""
        self.close()
        self.explanations.clear()
        self.predictions.clear()

    def _store(self, image, method, target, params, layer, explanation) -> None:
        self.explanations.put(self.explanation_key(image, method, target, params, layer), explanation)
        if target is None:  # the top-1 class, asked for by its index, is the same map
            key = self.explanation_key(image, method, explanation.target, params, layer)
            self.explanations.put(key, explanation)

    @staticmethod
    def predictions_key(image: Hashable, digest: str | None, baseline: Any, topk: int) -> tuple:
        return (image, digest, freeze(baseline) if digest is not None else None, topk)

    def predict(self, image: Hashable, x: Any, mask: np.ndarray | None, baseline: Any, topk: int) -> list:
        """Top-``topk`` predictions with ``mask``ed pixels replaced by ``baseline``."""
        digest = mask_digest(mask)
        key = self.predictions_key(image, digest, baseline, topk)
        found = self.predictions.get(key)
        if found is not None:
            return found
        with model_lock(self.explainer.model):
            if digest is None:
                self.calls["predict"] += 1
                result = self.explainer.predict(x, topk=topk)
            else:
                self.calls["occlude"] += 1
                result = self.explainer.occlude(x, mask, baseline=baseline, topk=topk)
        self.predictions.put(key, result)
        return result
