"""What the widgets remember: a bounded LRU cache, and the keys its entries go by.

Keys are hashable stand-ins for what a result depends on: ``freeze`` for parameter values
(tensors by identity and version), ``mask_digest`` for a painted mask (its uint8 levels, as the
browser keeps them). The widgets' state compares values the same way (``state.py``).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

# Feature maps of every layer of a big model are tens of MB per image: bound the bytes too.
CACHE_BYTES = 512 * 2**20


class LRUCache:
    """A thread-safe least-recently-used cache with at most ``size`` entries and, with
    ``max_bytes``, at most that many bytes by ``weigh(value)`` (the newest entry always stays)."""

    def __init__(self, size: int = 256, max_bytes: int | None = None,
                 weigh: Callable[[Any], int] | None = None):
        if size < 1:
            raise ValueError(f"cache size must be >= 1; got {size}")
        if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int)
                                      or max_bytes < 1):
            raise ValueError(f"cache_bytes must be a positive int or None; got {max_bytes!r}")
        self.size, self.max_bytes = size, max_bytes
        self._weigh = weigh if weigh is not None else (lambda value: 0)
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key][0]
            self.misses += 1
            return default

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: Hashable, value: Any) -> None:
        weight = self._weigh(value) if self.max_bytes is not None else 0
        with self._lock:
            if key in self._items:
                self.bytes -= self._items.pop(key)[1]
            self._items[key] = (value, weight)
            self.bytes += weight
            while len(self._items) > self.size or (
                    self.max_bytes is not None and self.bytes > self.max_bytes and len(self._items) > 1):
                self.bytes -= self._items.popitem(last=False)[1][1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def explanation_bytes(explanation: Any) -> int:
    """Memory an Explanation holds: its attribution and its (H, W) float32 map, made or to be
    made (the input picture is shared by every result for that image, so not counted)."""
    attribution = explanation.attribution
    height, width = explanation.image.shape[:2]
    return attribution.numel() * attribution.element_size() + 4 * height * width


def freeze(value: Any) -> Hashable:
    """A hashable stand-in for a parameter value (tensors and arrays by identity and version)."""
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if hasattr(value, "_version") and hasattr(value, "data_ptr"):  # torch.Tensor
        return ("tensor", id(value), value._version)
    try:
        hash(value)
    except TypeError:
        return ("object", id(value))
    return value


def same_frozen(a: Any, b: Any) -> bool:
    """Whether two parameter values are the same for the cache (a state field's ``same``)."""
    return freeze(a) == freeze(b)


def same_mask(a: Any, b: Any) -> bool:
    """Whether two masks are the same for the cache: the same uint8 levels."""
    return mask_digest(a) == mask_digest(b)


def mask_digest(mask: np.ndarray | None) -> str | None:
    """A short content hash of a blend mask (as the uint8 the browser keeps); ``None`` when empty."""
    if mask is None:
        return None
    levels = np.clip(np.asarray(mask, np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
    if not levels.any():
        return None
    return hashlib.blake2b(levels.tobytes(), digest_size=12).hexdigest()
