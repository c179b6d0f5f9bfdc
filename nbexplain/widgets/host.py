"""What every nbexplain widget does alike: show its ipywidgets tree, wait for its worker thread,
and close (the worker first, then the kept forward pass, then every ipywidget it made)."""

from __future__ import annotations

from typing import Any, TypeVar

from .cached import CachedExplainer
from .scheduler import Scheduler

Host = TypeVar("Host", bound="WidgetHost")


class WidgetHost:
    """Base of ``Explorer`` and ``Compare``: they set ``widget`` (the tree to show),
    ``scheduler``, ``engine`` and ``_closed``, and list in ``_parts`` what ``close`` closes."""

    widget: Any
    scheduler: Scheduler
    engine: CachedExplainer
    _closed: bool

    def _parts(self) -> list[Any]:
        """Everything with a ``close()`` the widget made (ipywidgets, panels)."""
        raise NotImplementedError

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _repr_mimebundle_(self, **kwargs: Any):
        return self.widget._repr_mimebundle_(**kwargs)

    def wait(self: Host, timeout: float | None = None) -> Host:
        """Block until every requested computation finished and is shown."""
        if not self.scheduler.wait(timeout):
            raise TimeoutError(f"the {type(self).__name__} was still computing after {timeout} s")
        return self

    def close(self) -> None:
        """Stop the worker thread, free the kept forward pass and close the widgets."""
        if self._closed:
            return
        self._closed = True
        self.scheduler.close()
        self.engine.close()
        for part in self._parts():
            part.close()
