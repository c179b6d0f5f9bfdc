"""The method registry: every explanation method, with its declared parameters.

One declaration feeds both the Python API (validation, defaults, errors) and the widget
(controls are built from ``Param`` type, range, choices and help).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

Space = Literal["pixel", "layer", "unit", "model"]
MAP_SPACES = ("pixel", "layer", "unit")  # spaces whose attributions are maps over the image


@dataclass(frozen=True)
class Param:
    """One tunable parameter of a method."""

    name: str
    type: type | tuple[type, ...]
    default: Any
    help: str = ""
    range: tuple[float | None, float | None] | None = None
    choices: tuple[Any, ...] | None = None

    def validate(self, value: Any, method: str) -> Any:
        """Return ``value`` checked (and widened int → float); raise naming the parameter."""
        where = f"{method}: parameter {self.name!r}"
        accepted = self.type if isinstance(self.type, tuple) else (self.type,)
        if value is None and self.default is None:
            return None
        if float in accepted and isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{where} must be a finite number, got {value!r}")
        if int in accepted and isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = int(value)
        if isinstance(value, bool) and bool not in accepted:
            raise TypeError(f"{where} expects {_type_names(accepted)}, got bool")
        if not isinstance(value, accepted):
            raise TypeError(f"{where} expects {_type_names(accepted)}, got {type(value).__name__}")
        if self.choices is not None and isinstance(value, str) and value not in self.choices:
            raise ValueError(f"{where} must be one of {list(self.choices)}, got {value!r}")
        if self.range is not None and isinstance(value, numbers.Real):
            low, high = self.range
            if (low is not None and value < low) or (high is not None and value > high):
                raise ValueError(f"{where} must be {_range_text(low, high)}, got {value!r}")
        return value


def _range_text(low, high) -> str:
    if high is None:
        return f">= {low}"
    if low is None:
        return f"<= {high}"
    return f"in [{low}, {high}]"


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)


@dataclass(frozen=True)
class Method:
    """A registered explanation method.

    ``fn(ctx, **params)`` returns the raw attribution; ``to_map(attribution, ctx, params)``
    turns it into ``MapValues``, the 2-D values a map shows and its colour scale (defaults by
    ``space`` live in ``engine/results.py``); ``unit`` says what a value is, for colour bars.
    ``layerwise`` (optional) computes many layers from one pass, for ``explain_layers``;
    ``combine(activation, gradient, **params)`` (optional) makes one layer's map from its kept
    output and gradient, so a ``LayerSession`` answers it with no new pass. ``picker=False``:
    a method shown in a panel of its own (filters), not offered in a widget's method picker.
    ``last_layer_only``: it applies at the last feature map only (CAM needs the map that the
    head pools), so a widget pins the layer there instead of offering every layer.
    """

    name: str
    fn: Callable[..., torch.Tensor]
    family: str
    space: Space
    summary: str
    params: tuple[Param, ...] = ()
    signed: bool = False
    to_map: Callable[..., Any] | None = None
    unit: str = ""
    layerwise: Callable[..., dict[str, torch.Tensor]] | None = None
    combine: Callable[..., torch.Tensor] | None = None
    picker: bool = True
    last_layer_only: bool = False

    @property
    def needs_layer(self) -> bool:
        return self.space in ("layer", "unit")

    @property
    def all_layers(self) -> bool:
        """Computed for every layer at once (one pass answers the whole layer slider)."""
        return self.needs_layer and (self.layerwise is not None or self.combine is not None)

    @property
    def shows_a_map(self) -> bool:
        """Gives a map over the image that a widget's picker offers."""
        return self.space in MAP_SPACES and self.picker

    def param(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        raise ValueError(
            f"method {self.name!r} has no parameter {name!r}; valid: {self.param_names()}"
        )

    def param_names(self) -> list[str]:
        return [param.name for param in self.params]

    def bind(self, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``given``, every value validated."""
        unknown = sorted(set(given) - set(self.param_names()))
        if unknown:
            valid = self.param_names() or "none"
            raise ValueError(
                f"method {self.name!r} got unknown parameter(s) {unknown}; valid: {valid}"
            )
        bound = {param.name: param.default for param in self.params}
        for name, value in given.items():
            bound[name] = self.param(name).validate(value, self.name)
        return bound


_REGISTRY: dict[str, Method] = {}


def register(
    name: str,
    *,
    family: str,
    space: Space,
    summary: str,
    params: tuple[Param, ...] = (),
    signed: bool = False,
    to_map: Callable[..., Any] | None = None,
    unit: str = "",
    layerwise: Callable[..., dict[str, torch.Tensor]] | None = None,
    combine: Callable[..., torch.Tensor] | None = None,
    picker: bool = True,
    last_layer_only: bool = False,
) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Decorator: declare ``fn`` as method ``name`` (fields as in ``Method``)."""

    def decorate(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        _REGISTRY[name] = Method(
            name=name,
            fn=fn,
            family=family,
            space=space,
            summary=summary,
            params=params,
            signed=signed,
            to_map=to_map,
            unit=unit,
            layerwise=layerwise,
            combine=combine,
            picker=picker,
            last_layer_only=last_layer_only,
        )
        return fn

    return decorate


def get(name: str) -> Method:
    """The method called ``name``; a ``ValueError`` lists the valid names otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"method must be a str, got {type(name).__name__}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; valid: {sorted(_REGISTRY)}") from None


def methods(family: str | None = None) -> list[str]:
    """Names of the registered methods (optionally one family), in registration order."""
    return [m.name for m in _REGISTRY.values() if family is None or m.family == family]


def all_methods() -> list[Method]:
    return list(_REGISTRY.values())
