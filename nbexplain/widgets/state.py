"""Widget state declared once: traitlets fields, one way to change them, one table of what follows.

A widget (``Explorer``, ``Compare``, the dataset widgets to come) is a ``StateHost``: its state
values are ``Field`` traits, checked by its ``@t.validate`` handlers and observable as any
traitlets value (``widget.observe(fn, names="layer")``). Every change takes one path: an
assignment (``widget.layer = ...``) is ``set(layer=...)``, a control's change is
``from_control``. ``set`` checks the whole batch before anything changes (a validator sees the
batch's other new values through ``proposed``), stores it, runs the class's ``Reactions`` (each
row whose fields changed, once, in the order declared: show the state in the canvas and the
controls, then start the computations), then announces each changed field once.

A control follows its field through a ``bind`` row: the field's value is written into the
control, the user's change comes back through ``from_control``, and the echo of a written value
finds nothing changed, so it is a no-op (no "quiet" flags). The one write whose echo is not the
state's value is a selection control's new options (ipywidgets passes through the first option
on the way): ``Options`` marks it, for the thread doing it only. So is a coarser view of the
field (the layer slider shows a sub-layer's block): its write is marked the same way.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

import traitlets as t

Host = TypeVar("Host", bound="StateHost")
_ORDER = itertools.count()


def _equal(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # arrays, tensors: a Field compares them with its own ``same``
        return False


def _identity(value: Any) -> Any:
    return value


def _resolve(owner: Any, path: str) -> Any:
    for name in path.split("."):
        owner = getattr(owner, name)
    return owner


class Field(t.Any):
    """A state value of a ``StateHost``; assigning it is ``owner.set(name=value)``.

    ``same(old, new)`` says that a new value changes nothing (default ``==``); ``read`` is
    applied on reading (a copy of a mutable value). Fields are checked in declaration order.
    """

    def __init__(self, help: str = "", *, same: Callable[[Any, Any], bool] | None = None,
                 read: Callable[[Any], Any] | None = None):
        super().__init__(None, allow_none=True, help=help)
        self.__doc__ = help
        self.same = same or _equal
        self.read = read
        self.order = next(_ORDER)

    def get(self, obj: Any, cls: Any = None) -> Any:
        value = super().get(obj, cls)
        return value if self.read is None else self.read(value)

    def stored(self, obj: Any) -> Any:
        """The value as stored (no ``read``)."""
        return super().get(obj, type(obj))

    def set(self, obj: Any, value: Any) -> None:
        if obj._storing == threading.get_ident():  # inside obj.set: checked already
            super().set(obj, value)
        else:
            obj.set(**{self.name: value})


def proposed(proposal: t.Bunch, name: str) -> Any:
    """In a validator: the value field ``name`` will have once the batch being checked is set
    (fields are checked in declaration order: this sees the new value of one declared before)."""
    batch = proposal.get("batch", {})
    return batch[name] if name in batch else getattr(proposal.owner, name)


# -- what follows a change ---------------------------------------------------------------------
class Row:
    """After a batch that changed any of ``fields``: ``owner.<do>()`` (a dotted path), once even
    if several rows name it, if ``when(owner)`` holds. A row that ``shows`` only puts the state
    on screen (safe to repeat); one that does not starts work (a compute lane, a panel)."""

    def __init__(self, fields: Iterable[str], do: str, *, when: Callable[[Any], bool] | None = None,
                 shows: bool = True):
        self.fields, self.do, self.when, self.shows = frozenset(fields), do, when, shows

    def apply(self, owner: StateHost) -> None:
        _resolve(owner, self.do)()


class Mirror(Row):
    """``owner.<to> = show(owner.<field>)`` when it differs (a canvas trait: one way)."""

    def __init__(self, field: str, to: str, show: Callable[[Any], Any] = _identity):
        super().__init__((field,), to)
        self.field, self.show = field, show

    def apply(self, owner: StateHost) -> None:
        path, attribute = self.do.rsplit(".", 1)
        target, value = _resolve(owner, path), self.show(getattr(owner, self.field))
        if not _equal(getattr(target, attribute), value):
            setattr(target, attribute, value)


class Bind(Row):
    """A field and a control's ``value``, both ways (see ``Link``): ``show`` maps the field's value
    to the control's (a function, or the dotted path of the owner's), ``read`` back; ``choices``:
    a value missing from the options is appended."""

    def __init__(self, field: str, control: str, show: Callable[[Any], Any] | str = _identity,
                 read: Callable[[Any], Any] = _identity, choices: bool = False):
        super().__init__((field,), control)
        self.field, self.show, self.read, self.choices = field, show, read, choices

    def apply(self, owner: StateHost) -> None:
        owner._links[self].show()


def show(*fields: str, do: str) -> Row:
    """Put the state on screen after a change of ``fields``: ``owner.<do>()``."""
    return Row(fields, do)


def start(*fields: str, do: str, when: Callable[[Any], bool] | None = None) -> Row:
    """Start work after a change of ``fields``: ``owner.<do>()`` (if ``when(owner)``)."""
    return Row(fields, do, when=when, shows=False)


mirror = Mirror
bind = Bind


class Reactions:
    """A widget class's table of what follows a change of its state; the rows run in order."""

    def __init__(self, *rows: Row):
        self.rows = rows

    def attach(self, owner: StateHost) -> dict[Row, Link]:
        """The links of the ``bind`` rows, once ``owner``'s controls exist."""
        return {row: Link(owner, row) for row in self.rows if isinstance(row, Bind)}

    def run(self, owner: StateHost, changed: Iterable[str], shows_only: bool = False,
            starts_only: bool = False) -> None:
        """Every row whose fields are among ``changed`` (only those that show, with ``shows_only``;
        only those that start work, with ``starts_only``), each action once."""
        changed, done = set(changed), set()
        for row in self.rows:
            if (shows_only and not row.shows) or (starts_only and row.shows) or row.do in done \
                    or not row.fields & changed:
                continue
            if row.when is None or row.when(owner):
                done.add(row.do)
                row.apply(owner)


class Options:
    """Replacing a selection control's options: ipywidgets moves its value to the first option on
    the way, which is not the user's pick. ``replacing`` is true only for the thread doing it;
    another thread asking waits until it is done (so a user's change meanwhile is kept)."""

    def __init__(self):
        self._lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def replace(self):
        with self._lock:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1

    @property
    def replacing(self) -> bool:
        with self._lock:
            return self._depth > 0


class Link:
    """Keeps a control's ``value`` showing a field: ``show()`` writes it there; the user's change
    goes to ``owner.from_control`` (where the echo of ``show`` finds nothing changed)."""

    def __init__(self, owner: StateHost, row: Bind):
        self.owner, self.row = owner, row
        self.control = _resolve(owner, row.do)
        self.options = Options()
        self.control.observe(self._changed, names="value")

    def _changed(self, change: dict) -> None:
        if not self.options.replacing:
            self.owner.from_control(self.row.field, self.row.read(change["new"]))

    def show(self) -> None:
        show = self.row.show
        show = _resolve(self.owner, show) if isinstance(show, str) else show
        field = getattr(self.owner, self.row.field)
        value, control = show(field), self.control
        if self.row.choices:
            if value is None:
                return  # nothing to choose (a model without spatial layers)
            if value not in control.options:
                with self.options.replace():
                    control.options = [*control.options, value]
        if not _equal(control.value, value):
            if _equal(self.row.read(value), field):
                control.value = value  # its echo finds nothing changed
            else:
                with self.options.replace():  # a coarser view of the field: its echo is not the user's
                    control.value = value


# -- the state ---------------------------------------------------------------------------------
def _ignore(change: Any) -> None:
    pass


class StateHost(t.HasTraits):
    """Traitlets state with one way in (``set``) and a declared table of what follows.

    Subclasses declare ``Field``s, their ``@t.validate`` handlers and ``reactions``; they may
    add the values a batch implies (``_derive``), keep their own bookkeeping in step before the
    batch is announced (``_settle``), and show a control's error (``_show_error``,
    ``_clear_error``).
    """

    reactions: ClassVar[Reactions] = Reactions()
    _storing: int | None = None
    _closed = False

    def __init__(self) -> None:
        super().__init__()  # no trait keywords: every value comes in through set() or _start()
        self._state_lock = threading.RLock()
        self._links: dict[Row, Link] = {}

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The state's fields, in the order they are declared (and checked)."""
        return tuple(cls._layout()[0])

    @classmethod
    def _layout(cls) -> tuple[dict[str, Field], dict[str, Callable]]:
        """(fields in order, their validators), found once per class."""
        if "_layout_cache" not in cls.__dict__:
            traits = {n: f for n, f in cls.class_traits().items() if isinstance(f, Field)}
            fields = dict(sorted(traits.items(), key=lambda item: item[1].order))
            validators = {name: handler for handler in cls.trait_events().values()
                          if isinstance(handler, t.ValidateHandler) for name in handler.trait_names}
            cls._layout_cache = (fields, validators)
        return cls._layout_cache

    # -- one way in ------------------------------------------------------------------------
    def set(self: Host, **changes: Any) -> Host:
        """Change several values at once: all are checked before any is set (a bad one raises
        naming it); then what follows runs once and each changed field is announced once."""
        fields = self.fields()
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise TypeError(f"set() got unexpected keyword argument(s) {unknown}; valid: {list(fields)}")
        with self._state_lock:
            changed = self._apply(self._propose(changes), changes)
        self._announce(changed)
        return self

    def from_control(self, name: str, value: Any) -> None:
        self.from_controls({name: value})

    def from_controls(self, changes: Mapping[str, Any]) -> None:
        """A control changed: set the state. An invalid value is shown in the widget, not raised,
        and the controls show the state again; the state's own value (an echo) changes nothing."""
        with self._state_lock:
            try:
                new = self._propose(changes)
            except Exception as error:
                self._show_error(error, "control")
                self.reactions.run(self, changes, shows_only=True)
                return
            if not new:
                return
            try:
                changed = self._apply(new, changes)
            except Exception as error:  # what follows failed; the state did change
                self._show_error(error, "control")
                return
        try:
            self._announce(changed)
        except Exception as error:  # an observer's
            self._show_error(error, "control")
        else:
            self._clear_error("control")

    def _propose(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """The fields ``changes`` changes, checked, with what they imply (``_derive``)."""
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} was closed; create a new one")
        new = self._unchanged_dropped(self._check(changes))
        self._derive(new, changes)
        return self._unchanged_dropped(new)

    def _check(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        fields, validators = self._layout()
        batch: dict[str, Any] = {}
        for name, field in fields.items():
            if name in changes:
                value = changes[name]
                if name in validators:
                    proposal = t.Bunch(trait=field, value=value, owner=self, batch=batch)
                    value = validators[name](self, proposal)
                batch[name] = value
        return batch

    def _unchanged_dropped(self, values: dict[str, Any]) -> dict[str, Any]:
        fields = self._layout()[0]
        return {n: v for n, v in values.items() if not fields[n].same(fields[n].stored(self), v)}

    def _apply(self, new: dict[str, Any], given: Mapping[str, Any]) -> dict[str, t.Bunch]:
        """Store and run what follows; the caller announces the changes, outside the lock (an
        observer may ``wait()`` for the worker, which takes the lock to show a result), and its
        observers find the canvas, the controls and a cached result already in step."""
        changes = self._store(new, given)
        self.reactions.run(self, changes)
        return changes

    def _announce(self, changes: Mapping[str, t.Bunch]) -> None:
        for change in changes.values():
            self.notify_change(change)

    def _store(self, new: dict[str, Any], given: Mapping[str, Any]) -> dict[str, t.Bunch]:
        fields = self._layout()[0]
        old = {name: fields[name].stored(self) for name in new}
        self._storing = threading.get_ident()
        try:
            self.notify_change = _ignore  # the batch is announced by _apply, once it is all set
            try:
                with self.cross_validation_lock:
                    for name, value in new.items():
                        self.set_trait(name, value)
            finally:
                del self.notify_change
            self._settle(new, given)
        finally:
            self._storing = None
        return {name: t.Bunch(name=name, old=old[name], new=value, owner=self, type="change")
                for name, value in new.items()}

    def _start(self, given: Mapping[str, Any], **defaults: Any) -> None:
        """The first state: ``given`` checked as ``set`` checks it, ``defaults`` as they are.
        Nothing is announced; ``_show_all`` shows it once the widgets exist."""
        with self._state_lock:
            values = {**defaults, **self._check(given)}
            self._store({name: values[name] for name in self.fields() if name in values}, given)

    def _show_all(self) -> None:
        """Attach the controls and run every row: the first view, the first computations."""
        self._links = self.reactions.attach(self)
        self.reactions.run(self, self.fields())

    # -- for subclasses --------------------------------------------------------------------
    def _derive(self, new: dict[str, Any], given: Mapping[str, Any]) -> None:
        """Add to ``new`` (the changed fields, checked) the values they imply."""

    def _settle(self, new: dict[str, Any], given: Mapping[str, Any]) -> None:
        """Bring derived bookkeeping in step with the new state, before anyone hears of it."""

    def _show_error(self, error: BaseException, source: str) -> None:
        raise error

    def _clear_error(self, source: str) -> None:
        pass
