"""``MapView``: one canvas showing one method's map, requested through a shared scheduler and cache.

It numbers its requests and shows only the latest, so a slow stale result never replaces a newer
one; a cached result is shown at once, in the caller's thread, anything else is computed on the
worker thread (``scheduler.py``). A map reaches the canvas as its raw values at the method's own
resolution with their colour scale, unit and a caption (``show_explanation``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

import torch

from ..engine import registry
from ..engine.context import Cancelled
from ..engine.maps import MapValues
from ..engine.results import default_values
from .cached import CachedExplainer
from .scheduler import Job, Scheduler

PREVIEW_INTERVAL = 0.1  # seconds between coarse previews of a progressive map


def canvas_caption(explanation: Any) -> str:
    """The canvas's caption: the class first, so it reads at a glance, then the method and layer
    (the colour bar under the picture says what the colours mean)."""
    e = explanation
    where = f" · layer {e.layer}" if e.layer else ""
    return f"{e.label} (class {e.target}, logit {e.score:.3g}) · {e.method}{where}"


def show_explanation(canvas: Any, explanation: Any) -> None:
    """Put ``explanation`` on ``canvas``: its raw values at the method's own resolution (a layer's
    grid, or the input's pixels; the browser upsamples and colours them), scale, unit, caption."""
    canvas.set_heatmap(explanation.values, caption=canvas_caption(explanation))


def preview_values(method: str, partial: Any, size: tuple[int, int], params: dict) -> MapValues:
    """A progressive method's partial attribution on the same kind of scale as its final map."""
    spec = registry.get(method)
    attribution = torch.as_tensor(partial).detach().float().cpu()
    if spec.to_map is not None:
        values = spec.to_map(attribution, None, params)  # occlusion's reads no context
        return values if values.unit else values.with_unit(spec.unit)
    return default_values(spec, attribution, size)


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
                with self._lock:  # stop() redraws under the lock: no preview lands after it
                    if seq == self._seq:
                        self._preview(partial, method, target, params, x)
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
                        self._redraw()
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
                    "error": "error (shown on the picture)"}.get(self.status, "…")
        where = f" · {e.layer}" if e.layer else ""
        ms = f" · {self.last_ms:.0f} ms" if self.last_ms is not None else ""
        return f"{e.method}{where} · {e.label} (score {e.score:.3g}){ms}"

    def stop(self) -> None:
        """Drop the pending request and stop the running one (if it checks ``should_stop``)."""
        with self._lock:
            self._seq += 1
            self.requested = None  # nothing is being served: the same request runs again if asked
            if self.status == "computing":
                self._redraw()
                self._set_status("stopped", busy=False)
        self.scheduler.cancel(self.lane)

    def _redraw(self) -> None:
        """Show ``explanation`` again, so a stopped map's preview does not stay in its place."""
        if self.explanation is None:
            self.canvas.set_heatmap(None)
        else:
            show_explanation(self.canvas, self.explanation)

    def _show(self, explanation: Any, seq: int, started: float) -> None:
        with self._lock:
            if seq != self._seq:
                return  # a newer request is on its way
            self.explanation = explanation
            show_explanation(self.canvas, explanation)
            self.last_ms = 1000 * (time.perf_counter() - started)
            self.error = ""
            self.canvas.error = ""
            self._set_status("ready", busy=False)

    def _preview(self, partial: Any, method: str, target: int | None, params: dict, x: Any) -> None:
        """A coarse map while a progressive method (occlusion) refines it, captioned as such."""
        try:
            size = tuple(x.shape[-2:])
            labels = getattr(self.engine.explainer, "labels", None)
            name = "top class" if target is None else labels.name(target) if labels else f"class {target}"
            caption = f"{name} · {method} · coarse preview, refining …"
            self.canvas.set_heatmap(preview_values(method, partial, size, params), caption=caption)
        except Exception as error:  # a preview only: say why it is missing, keep computing
            self.describe = f"{self.describe} (no preview: {error})"

    def show_error(self, error: BaseException, seq: int | None = None) -> None:
        with self._lock:
            if seq is not None and seq != self._seq:
                return
            self.error = f"{type(error).__name__}: {error}"
            self.canvas.error = self.error
            self.explanation = None  # no map of another request stays on screen as if it were this one
            self.canvas.set_heatmap(None)
            self._set_status("error", busy=False)

    def _set_status(self, status: str, busy: bool) -> None:
        self.status = status
        self.canvas.busy = busy
        self.on_change(self)
