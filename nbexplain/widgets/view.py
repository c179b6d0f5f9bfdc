"""``MapView``: one canvas showing one method's map, requested through a shared scheduler and cache.

It numbers its requests and shows only the latest, so a slow stale result never replaces a newer
one; a cached result is shown at once, in the caller's thread, anything else is computed on the
worker thread (``scheduler.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from .. import render
from ..engine import registry
from ..engine.context import Cancelled
from .cached import CachedExplainer
from .scheduler import Job, Scheduler

PREVIEW_INTERVAL = 0.1  # seconds between coarse previews of a progressive map


def canvas_map(explanation: Any) -> tuple[np.ndarray, bool]:
    """What the canvas gets for an explanation: a layer map at its own resolution (the browser
    upsamples), any other map at input resolution; and whether it is signed."""
    spec = registry.get(explanation.method)
    values = explanation.attribution
    own_resolution = values.ndim == 2 and tuple(values.shape) != explanation.map.shape
    if own_resolution and spec.to_map is None and not spec.signed:
        return render.normalize_minmax(values), False
    return np.ascontiguousarray(explanation.map, dtype=np.float32), bool(explanation.signed)


class MapView:
    """One canvas showing one method's map, requested through a shared scheduler and cache.

    Requests are numbered and only the latest is shown, so a slow stale result never replaces a
    newer one. A cached result is shown at once, in the caller's thread; anything else is
    computed on the worker (lane ``lane``). ``on_change(view)`` runs after every change of
    ``status`` (from either thread).
    """

    def __init__(self, canvas: Any, engine: CachedExplainer, scheduler: Scheduler, lane: str,
                 on_change: Callable[[MapView], None] | None = None):
        self.canvas, self.engine, self.scheduler, self.lane = canvas, engine, scheduler, lane
        self.on_change = on_change or (lambda view: None)
        self.explanation: Any = None
        self.status = "ready"  # "computing", "error", "stopped"
        self.error = ""
        self.last_ms: float | None = None
        self.describe = ""  # what is being computed
        self.requested: tuple | None = None  # the cache key of the latest request
        self._seq = 0
        self._lock = threading.RLock()
        self._preview_at = 0.0

    def request(self, token: Hashable, x: Any, method: str, target: int | None, params: dict,
                layer: str | None, progress: Callable[[float], None] | None = None) -> None:
        """Show ``method``'s map for these settings: now if cached, else when computed."""
        started = time.perf_counter()
        with self._lock:
            self._seq += 1
            seq = self._seq
        key = self.requested = self.engine.explanation_key(token, method, target, params, layer)
        found = self.engine.cached_explanation(key)
        if found is not None:
            self.scheduler.cancel(self.lane)
            self._show(found, seq, started)
            return
        self.describe = f"{method}" + (f" at {layer}" if layer else "")
        self._set_status("computing", busy=True)

        def report(fraction: float, partial: Any = None) -> None:
            if seq != self._seq:
                return
            now = time.perf_counter()
            if partial is not None and now - self._preview_at > PREVIEW_INTERVAL:
                self._preview_at = now
                self._preview(partial, registry.get(method).signed)
            if progress is not None:
                progress(fraction)

        def run(job: Job) -> None:
            try:
                result = self.engine.explain(
                    token, x, method, target, params, layer,
                    progress=report, should_stop=lambda: job.should_stop() or seq != self._seq,
                )
            except Cancelled:  # by stop(), a newer request (which shows itself) or close()
                with self._lock:
                    if seq == self._seq:
                        self._set_status("stopped", busy=False)
            except Exception as error:
                self.show_error(error, seq)
            else:
                self._show(result, seq, started)

        self.scheduler.submit(self.lane, run)

    def summary(self) -> str:
        """One line on what the view shows (method, layer, class, score, time) or is doing."""
        e = self.explanation
        if self.status != "ready" or e is None:
            return {"computing": f"computing {self.describe} …", "stopped": "stopped",
                    "error": "error (see below)"}.get(self.status, "…")
        where = f" · {e.layer}" if e.layer else ""
        ms = f" · {self.last_ms:.0f} ms" if self.last_ms is not None else ""
        return f"{e.method}{where} · {e.label} (score {e.score:.3g}){ms}"

    def stop(self) -> None:
        """Drop the pending request and stop the running one (if it checks ``should_stop``)."""
        with self._lock:
            self._seq += 1
            if self.status == "computing":
                self._set_status("stopped", busy=False)
        self.scheduler.cancel(self.lane)

    def _show(self, explanation: Any, seq: int, started: float) -> None:
        with self._lock:
            if seq != self._seq:
                return  # a newer request is on its way
            self.explanation = explanation
            heat, signed = canvas_map(explanation)
            self.canvas.set_heatmap(heat, signed=signed)
            self.last_ms = 1000 * (time.perf_counter() - started)
            self.error = ""
            self.canvas.error = ""
            self._set_status("ready", busy=False)

    def _preview(self, partial: Any, signed: bool) -> None:
        """A coarse map while a progressive method (occlusion) refines it."""
        try:
            values = partial.detach().float().cpu().numpy() if hasattr(partial, "detach") else partial
            values = np.nan_to_num(np.asarray(values, np.float32))
            values = values.sum(0) if values.ndim == 3 else values
            scaled = render.normalize_signed(values) if signed else render.normalize_minmax(values)
            self.canvas.set_heatmap(scaled, signed=signed)
        except Exception as error:  # a preview only: say why it is missing, keep computing
            self.describe = f"{self.describe} (no preview: {error})"

    def show_error(self, error: BaseException, seq: int | None = None) -> None:
        with self._lock:
            if seq is not None and seq != self._seq:
                return
            self.error = f"{type(error).__name__}: {error}"
            self.canvas.error = self.error
            self._set_status("error", busy=False)

    def _set_status(self, status: str, busy: bool) -> None:
        self.status = status
        self.canvas.busy = busy
        self.on_change(self)
