"""What every nbexplain widget does alike: show its ipywidgets tree, follow its views in the page,
wait for its worker thread, and close.

A widget whose views are all gone (its cell re-run, its output cleared) stops computing, so an
orphan never holds the model while the new one waits; ipywidgets' front end counts the views of a
model whose ``_view_count`` is a number (it adds one as a view is displayed and takes one off as
it is removed), and that count is what is followed here. ``close`` stops the worker, frees the
kept forward pass and the caches, and closes every ipywidget the widget made (layouts and styles
too), so none stays registered in ``ipywidgets.Widget.widgets`` or keeps the widget alive.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import ipywidgets as W
from ipywidgets import CallbackDispatcher

from .cached import CachedExplainer
from .scheduler import Scheduler

Host = TypeVar("Host", bound="WidgetHost")
OWNED = ("children", "layout", "style")  # the traits through which a widget owns others


def widget_tree(roots: Iterable[Any]) -> list[W.Widget]:
    """The ipywidgets in ``roots`` and those they own (children, layout, style), each once; a
    widget only referred to (ipycanvas's shared canvas manager) is not taken."""
    found: dict[int, W.Widget] = {}
    stack = list(roots)
    while stack:
        widget = stack.pop()
        if not isinstance(widget, W.Widget) or id(widget) in found:
            continue
        found[id(widget)] = widget
        for name in OWNED:
            value = getattr(widget, name, None) if widget.has_trait(name) else None
            stack.extend(value if isinstance(value, (list, tuple)) else [value])
    return list(found.values())


def close_widgets(*roots: Any) -> None:
    """Close ``roots`` and every widget they own (a closed widget leaves the registry), and drop
    their callbacks and observers: whoever still holds one (ipycanvas keeps the canvas drawn last)
    then holds no path back to the widget that made it."""
    for widget in widget_tree(roots):
        widget.close()
        for value in [*vars(widget).values(), *widget._trait_values.values()]:
            if isinstance(value, CallbackDispatcher):
                value.callbacks.clear()
        widget._trait_notifiers.clear()


class WidgetHost:
    """Base of ``Explorer`` and ``Compare``: they set ``widget`` (the tree to show),
    ``scheduler``, ``engine`` and ``_closed``, list in ``_parts`` what ``close`` closes besides
    that tree, in ``_map_views`` their ``MapView``s, and free their own results in ``_release``."""

    widget: Any
    scheduler: Scheduler
    engine: CachedExplainer
    _closed: bool
    _stopped_unseen = False  # computations were stopped when the last view went

    def _parts(self) -> list[Any]:
        """Everything with a ``close()`` the widget made (ipywidgets, panels)."""
        raise NotImplementedError

    def _map_views(self) -> list[Any]:
        return []

    def _release(self) -> None:
        """Drop the results this widget holds beyond its engine's caches."""

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _repr_mimebundle_(self, **kwargs: Any):
        return self.widget._repr_mimebundle_(**kwargs)

    # -- views in the page ---------------------------------------------------------------------
    def _follow_views(self) -> None:
        """Have the front end count the views of ``widget``, and hear when it does."""
        self.widget._view_count = 0
        self.widget.observe(self._views_changed, names="_view_count")

    def _views_changed(self, change: dict) -> None:
        old, new = change["old"] or 0, change["new"] or 0
        if self._closed:
            return
        if new <= 0 < old:
            self._views_gone()
        elif old <= 0 < new and self._stopped_unseen:
            self._stopped_unseen = False
            self._views_back()

    def _views_gone(self) -> None:
        """No view shows this widget any more: stop what runs and drop what waits (a later
        request, from code or a view shown again, computes as usual)."""
        self._stopped_unseen = True
        for view in self._map_views():
            view.stop()
        for lane in self.scheduler.lanes:
            self.scheduler.cancel(lane)

    def _views_back(self) -> None:
        """A view again after they were all gone: start what the state asks for once more."""
        self.reactions.run(self, self.fields(), starts_only=True)  # type: ignore[attr-defined]

    # -- waiting and closing ---------------------------------------------------------------------
    def wait(self: Host, timeout: float | None = None) -> Host:
        """Block until every requested computation finished and is shown."""
        if not self.scheduler.wait(timeout):
            raise TimeoutError(f"the {type(self).__name__} was still computing after {timeout} s")
        return self

    def close(self) -> None:
        """Stop the worker thread, free the kept forward pass and every cached result, and close
        the widgets (each ipywidget made, its layout and style too)."""
        if self._closed:
            return
        self._closed = True
        self.widget.unobserve(self._views_changed, names="_view_count")
        self.scheduler.close()
        self.engine.clear()
        for view in self._map_views():
            view.explanation = None
        self._release()
        parts = self._parts()
        close_widgets(self.widget, *(part for part in parts if isinstance(part, W.Widget)))
        for part in parts:
            if not isinstance(part, W.Widget):
                part.close()
