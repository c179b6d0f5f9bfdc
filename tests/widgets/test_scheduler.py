"""The widgets' worker thread (latest request wins, lanes, cancellation, closing) and caches."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

import nbexplain as nbx
from nbexplain.widgets.scheduler import (
    CachedExplainer,
    LRUCache,
    Scheduler,
    explanation_bytes,
    freeze,
    mask_digest,
)
from tests.models import TinyCNN, example_input


def blocker(scheduler: Scheduler, lane: str = "a") -> threading.Event:
    """Occupy the worker until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def run(job):
        started.set()
        release.wait(10)

    scheduler.submit(lane, run)
    assert started.wait(5)
    return release


def test_latest_request_wins_and_stale_ones_are_dropped():
    scheduler = Scheduler(["a"])
    ran = []
    release = blocker(scheduler)
    for i in range(20):
        scheduler.submit("a", lambda job, i=i: ran.append(i))
    release.set()
    assert scheduler.wait(5)
    assert ran == [19]
    assert scheduler.dropped == 19
    assert scheduler.submitted == 21 and scheduler.ran == 2
    scheduler.close()


def test_lanes_are_served_in_declared_order():
    scheduler = Scheduler(["fast", "slow"])
    ran = []
    release = blocker(scheduler, "slow")
    scheduler.submit("slow", lambda job: ran.append("slow"))
    scheduler.submit("fast", lambda job: ran.append("fast"))
    release.set()
    assert scheduler.wait(5)
    assert ran == ["fast", "slow"]
    scheduler.close()


def test_a_newer_request_asks_the_running_one_to_stop():
    scheduler = Scheduler(["a"])
    seen, started = [], threading.Event()

    def long(job):
        started.set()
        deadline = time.monotonic() + 5
        while not job.should_stop() and time.monotonic() < deadline:
            time.sleep(0.005)
        seen.append(job.should_stop())

    scheduler.submit("a", long)
    assert started.wait(5)
    scheduler.submit("a", lambda job: seen.append("next"))
    assert scheduler.wait(5)
    assert seen == [True, "next"]
    scheduler.close()


def test_cancel_drops_pending_and_stops_running():
    scheduler = Scheduler(["a"])
    release = blocker(scheduler)
    ran = []
    scheduler.submit("a", lambda job: ran.append(1))
    scheduler.cancel("a")
    release.set()
    assert scheduler.wait(5)
    assert ran == []
    scheduler.close()


def test_wait_times_out_while_busy():
    scheduler = Scheduler(["a"])
    release = blocker(scheduler)
    assert scheduler.wait(0.05) is False
    assert not scheduler.idle
    release.set()
    assert scheduler.wait(5) and scheduler.idle
    scheduler.close()


def test_close_joins_the_thread_and_refuses_new_requests():
    scheduler = Scheduler(["a"])
    scheduler.submit("a", lambda job: None)
    thread = scheduler.thread
    assert scheduler.close(5)
    assert thread is None or not thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.submit("a", lambda job: None)


def test_close_stops_a_job_that_checks_should_stop():
    scheduler = Scheduler(["a"])
    started = threading.Event()

    def long(job):
        started.set()
        while not job.should_stop():
            time.sleep(0.005)

    scheduler.submit("a", long)
    assert started.wait(5)
    assert scheduler.close(5)
    assert not any(t.name == scheduler.name and t.is_alive() for t in threading.enumerate())


def test_idle_worker_exits_and_restarts_on_demand():
    scheduler = Scheduler(["a"], idle_exit=0.05)
    scheduler.submit("a", lambda job: None)
    first = scheduler.thread
    assert scheduler.wait(5)
    first.join(5)
    assert not first.is_alive()
    ran = []
    scheduler.submit("a", lambda job: ran.append(1))
    assert scheduler.wait(5) and ran == [1]
    scheduler.close()


def test_an_unhandled_job_error_goes_to_on_error_and_the_worker_survives():
    errors = []
    scheduler = Scheduler(["a"], on_error=lambda job, error: errors.append(error))
    scheduler.submit("a", lambda job: 1 / 0)
    assert scheduler.wait(5)
    ran = []
    scheduler.submit("a", lambda job: ran.append(1))
    assert scheduler.wait(5)
    assert isinstance(errors[0], ZeroDivisionError) and ran == [1]
    scheduler.close()


def test_service_runs_a_cheap_lane_inside_a_long_job():
    scheduler = Scheduler(["fast", "slow"])
    order, started, queued = [], threading.Event(), threading.Event()

    def long(job):
        order.append("slow start")
        started.set()
        assert queued.wait(5)
        scheduler.service(["fast"])
        order.append("slow end")

    scheduler.submit("slow", long)
    assert started.wait(5)
    scheduler.submit("fast", lambda job: order.append("fast"))
    queued.set()
    assert scheduler.wait(5)
    assert order == ["slow start", "fast", "slow end"]
    with pytest.raises(RuntimeError, match="worker thread"):
        scheduler.service(["fast"])
    scheduler.close()


def test_lanes_are_checked():
    with pytest.raises(ValueError, match="lanes"):
        Scheduler([])
    scheduler = Scheduler(["a"])
    with pytest.raises(ValueError, match="unknown lane 'b'"):
        scheduler.submit("b", lambda job: None)


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


@pytest.fixture()
def engine():
    ex = nbx.Explainer(TinyCNN().eval(), labels=[f"c{i}" for i in range(10)])
    cached = CachedExplainer(ex)
    yield cached, ex, example_input()
    cached.close()


def test_cached_layer_methods_compute_every_layer_once(engine):
    cached, ex, x = engine
    assert ex.layers() == ["act1", "act2", "act3"]
    first = cached.explain(0, x, "gradcam", None, {}, "act3")
    assert dict(cached.calls) == {"session": 1}
    for layer in ex.layers():
        assert cached.explain(0, x, "gradcam", None, {}, layer).layer == layer
    assert dict(cached.calls) == {"session": 1}
    # the top-1 class asked for by index is the same map
    assert cached.explain(0, x, "gradcam", first.target, {}, "act3") is first
    assert dict(cached.calls) == {"session": 1}
    reference = ex.explain(x, "gradcam", layer="act2")
    same = cached.explain(0, x, "gradcam", None, {}, "act2")
    np.testing.assert_allclose(same.map, reference.map, atol=1e-6)
    # a layer outside layers() is computed on its own
    assert cached.explain(0, x, "gradcam", None, {}, "conv2").layer == "conv2"
    assert dict(cached.calls) == {"session": 1, "explain": 1}


def test_cached_pixel_method_and_predictions(engine):
    cached, ex, x = engine
    a = cached.explain(0, x, "smoothgrad", 1, {"samples": 4}, None)
    assert cached.explain(0, x, "smoothgrad", 1, {"samples": 4}, None) is a
    assert cached.explain(0, x, "smoothgrad", 1, {"samples": 5}, None) is not a
    assert cached.calls["explain"] == 2
    clean = cached.predict(0, x, None, "blur", 3)
    assert clean == ex.predict(x, topk=3)
    mask = np.zeros((16, 16), np.float32)
    mask[:8] = 1
    occluded = cached.predict(0, x, mask, "zeros", 3)
    assert occluded == ex.occlude(x, mask, baseline="zeros", topk=3)
    assert cached.predict(0, x, mask.copy(), "zeros", 3) is occluded
    assert cached.predict(0, x, np.zeros((16, 16)), "mean", 3) is clean  # an empty mask is no mask
    assert cached.calls["predict"] == 1 and cached.calls["occlude"] == 1


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


def test_cached_explanations_stay_within_cache_bytes():
    ex = nbx.Explainer(TinyCNN().eval(), labels=[f"c{i}" for i in range(10)])
    x = example_input()
    one = explanation_bytes(ex.explain(x, "saliency", target=0))
    cached = CachedExplainer(ex, max_bytes=3 * one)
    try:
        for target in range(6):
            cached.explain(0, x, "saliency", target, {}, None)
        assert len(cached.explanations) == 3 and cached.explanations.bytes <= 3 * one
        assert cached.explain(0, x, "saliency", 5, {}, None) is not None
        assert cached.calls["explain"] == 6  # the newest three are still there
    finally:
        cached.close()


def test_cache_size_is_checked():
    with pytest.raises(ValueError, match="cache_size"):
        CachedExplainer(None, size=0)
