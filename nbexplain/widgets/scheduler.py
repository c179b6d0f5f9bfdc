"""When the widgets compute: one worker thread, latest request wins, results cached.

Every engine call of a widget runs on its worker thread, off the kernel's main thread, so the
kernel keeps answering the browser while a map is computed. One thread per widget (not a pool).
Calls on one model take turns through the engine's ``model_lock`` (widgets and the user's own
cells alike), since the engine switches the model to eval mode for the length of a call.

Requests go to *lanes* ("explain", "predict", …). A lane holds at most one pending request: a
newer one replaces it (the older is dropped, never queued), and a running request of that lane
is asked to stop (``Job.should_stop``). Lanes are served in the order they were declared, so a
cheap interactive lane (the brush's predictions) can be put before an expensive one.

Trait updates from this thread do reach the browser: ipykernel (6 and later) sends comm messages
through its IOPub thread, whose socket is safe to use from any thread. The widget tests check it
against a real kernel (``tests/widgets/test_explorer.py::test_updates_from_worker_reach_frontend``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import numpy as np

from ..checks import check_count
from ..engine.guard import model_lock


class Job:
    """One request: ``fn(job)`` runs on the worker; ``job.should_stop()`` turns true once a
    newer request of the same lane arrived or the scheduler is closing."""

    def __init__(self, lane: str, fn: Callable[[Job], Any], scheduler: Scheduler):
        self.lane = lane
        self.fn = fn
        self._scheduler = scheduler
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def should_stop(self) -> bool:
        return self._cancelled.is_set() or self._scheduler.closed


class Scheduler:
    """A worker thread that runs the latest request of each lane.

    The thread starts on the first request and exits after ``idle_exit`` seconds without work
    (and at ``close``), so an explorer that is dropped without ``close`` leaves no thread behind.
    ``on_error(job, exception)`` receives what a job raised (a job normally handles its own).
    """

    def __init__(
        self,
        lanes: Iterable[str] = ("explain",),
        *,
        name: str = "nbexplain-worker",
        idle_exit: float = 30.0,
        on_error: Callable[[Job, BaseException], None] | None = None,
    ):
        self.lanes = list(lanes)
        if not self.lanes or len(set(self.lanes)) != len(self.lanes):
            raise ValueError(f"lanes must be distinct names, at least one; got {self.lanes}")
        self.name = name
        self.idle_exit = idle_exit
        self.on_error = on_error
        self._cond = threading.Condition()
        self._pending: dict[str, Job] = {}
        self._running: Job | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.submitted = 0  # requests received
        self.dropped = 0  # requests replaced by a newer one before they ran
        self.ran = 0  # requests that ran

    # -- requests ----------------------------------------------------------------------------
    def submit(self, lane: str, fn: Callable[[Job], Any]) -> Job:
        """Run ``fn(job)`` on the worker as the latest request of ``lane``."""
        self._check_lane(lane)
        job = Job(lane, fn, self)
        with self._cond:
            if self._closed:
                raise RuntimeError("the widget was closed; create a new one")
            self.submitted += 1
            self._cancel_locked(lane)
            self._pending[lane] = job
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return job

    def cancel(self, lane: str) -> None:
        """Drop the pending request of ``lane`` and ask its running one to stop."""
        self._check_lane(lane)
        with self._cond:
            self._cancel_locked(lane)
            self._cond.notify_all()

    def _cancel_locked(self, lane: str) -> None:
        old = self._pending.pop(lane, None)
        if old is not None:
            old.cancel()
            self.dropped += 1
        if self._running is not None and self._running.lane == lane:
            self._running.cancel()

    def _check_lane(self, lane: str) -> None:
        if lane not in self.lanes:
            raise ValueError(f"unknown lane {lane!r}; valid: {self.lanes}")

    # -- the worker --------------------------------------------------------------------------
    def _next_locked(self) -> Job | None:
        for lane in self.lanes:
            if lane in self._pending:
                return self._pending.pop(lane)
        return None

    def _loop(self) -> None:
        while True:
            with self._cond:
                job = self._next_locked()
                deadline = time.monotonic() + self.idle_exit
                while job is None and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                    job = self._next_locked()
                if job is None or self._closed:
                    if job is not None:
                        job.cancel()
                    if self._thread is threading.current_thread():
                        self._thread = None
                    self._cond.notify_all()
                    return
                self._running = job
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._running = None
                    self._cond.notify_all()

    def _run(self, job: Job) -> None:
        self.ran += 1
        try:
            job.fn(job)
        except Exception as error:  # a job handles its own errors; this is the last resort
            if self.on_error is not None:
                self.on_error(job, error)
            else:
                raise

    def service(self, lanes: Iterable[str]) -> None:
        """Run the pending requests of ``lanes`` now, from inside a running job (its progress
        callback): keeps a cheap lane live while a long job of another lane runs."""
        if threading.current_thread() is not self._thread:
            raise RuntimeError("Scheduler.service must be called from the worker thread")
        for lane in lanes:
            with self._cond:
                job = self._pending.pop(lane, None)
                if job is None:
                    continue
                outer, self._running = self._running, job
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._running = outer
                    self._cond.notify_all()

    # -- waiting and closing -----------------------------------------------------------------
    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._pending and self._running is None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_worker(self) -> bool:
        return threading.current_thread() is self._thread

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no request is pending or running; ``False`` if ``timeout`` passed first."""
        if self.in_worker:
            raise RuntimeError("wait() called from the worker thread would wait for itself")
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and self._running is None, timeout)

    def close(self, timeout: float | None = 10.0) -> bool:
        """Drop pending requests, ask the running one to stop, and join the thread.
        ``True`` when the thread is gone (a job that never checks ``should_stop`` is waited for
        up to ``timeout`` seconds)."""
        with self._cond:
            self._closed = True
            for lane in list(self._pending):
                self._cancel_locked(lane)
            if self._running is not None:
                self._running.cancel()
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return thread is None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread


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


# -- cached engine calls -----------------------------------------------------------------------
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


def mask_digest(mask: np.ndarray | None) -> str | None:
    """A short content hash of a blend mask (as the uint8 the browser keeps); ``None`` when empty."""
    if mask is None:
        return None
    levels = np.clip(np.asarray(mask, np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
    if not levels.any():
        return None
    return hashlib.blake2b(levels.tobytes(), digest_size=12).hexdigest()


# Feature maps of every layer of a big model are tens of MB per image: bound the bytes too.
CACHE_BYTES = 512 * 2**20


class CachedExplainer:
    """An ``Explainer``'s calls with their results kept: explanations keyed by (image, method,
    target, params, layer), at most ``size`` of them and ``max_bytes`` of their tensors;
    predictions by (image, mask, baseline, topk).

    A layer method is computed for every candidate layer at once, so moving the layer slider
    afterwards only reads the cache: methods that combine a layer's activation and gradient
    (Grad-CAM, Grad-CAM++, LayerCAM) through a ``LayerSession`` that keeps the image's forward
    pass (a new class costs one backward), others with an all-layers form through
    ``explain_layers`` (one forward and one backward). ``calls`` counts the engine calls made.
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
        from ..engine import registry

        key = self.explanation_key(image, method, target, params, layer)
        found = self.explanations.get(key)
        if found is not None:
            return found
        spec = registry.get(method)
        all_layers = spec.all_layers
        with model_lock(self.explainer.model):
            if all_layers and layer in self.explainer.layers():
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
