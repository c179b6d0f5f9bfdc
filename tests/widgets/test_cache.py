"""The widgets' LRU cache and the keys its entries go by."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nbexplain.widgets.cache import LRUCache, freeze, mask_digest


def test_lru_cache_evicts_the_least_recently_used():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert cache.get("zzz") is None and cache.misses == 1 and cache.hits == 3
    with pytest.raises(ValueError):
        LRUCache(0)


def test_freeze_and_mask_digest():
    t = torch.zeros(3)
    assert freeze({"b": 1, "a": [1, 2]}) == (("a", (1, 2)), ("b", 1))
    before = freeze(t)
    t.add_(1)  # an in-place change is a new key
    assert freeze(t) != before
    assert mask_digest(None) is None and mask_digest(np.zeros((4, 4))) is None
    mask = np.zeros((4, 4), np.float32)
    mask[1, 1] = 1
    assert mask_digest(mask) == mask_digest(mask.astype(bool))
    assert mask_digest(mask) != mask_digest(mask.T[::-1])


def test_lru_cache_bounds_bytes_and_keeps_the_newest_entry():
    cache = LRUCache(100, max_bytes=10, weigh=len)
    for key in "abc":
        cache.put(key, "xxxx")  # 4 bytes each: a and b fit, c pushes a out
    assert [k for k in "abc" if k in cache] == ["b", "c"] and cache.bytes == 8
    cache.put("b", "xx")  # replacing an entry re-weighs it
    assert cache.bytes == 6
    cache.put("big", "x" * 50)  # larger than the budget alone: kept, everything else goes
    assert len(cache) == 1 and "big" in cache and cache.bytes == 50
    with pytest.raises(ValueError, match="cache_bytes"):
        LRUCache(2, max_bytes=0)
