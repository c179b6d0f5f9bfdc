"""The widgets' argument checks: what a constructor keyword or a state value may be.

Each raises naming the argument and listing what is valid (``TypeError`` for a wrong type,
``ValueError`` for a wrong value); the state's validators (``@t.validate``) call them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import render
from ..engine import registry
from ..engine.explainer import Explainer
from ..engine.hooks import find_module
from ..engine.inputs import to_batch
from .canvas import MODES


def as_explainer(model_or_explainer: Any, model_options: dict) -> Explainer:
    """The ``Explainer`` given, or one built around a model with ``model_options``."""
    if isinstance(model_or_explainer, Explainer):
        if model_options:
            raise TypeError(
                f"{sorted(model_options)} configure a new Explainer; pass them to nbx.Explainer(...) "
                "or pass a model instead of an Explainer"
            )
        return model_or_explainer
    import torch

    if isinstance(model_or_explainer, torch.nn.Module):
        return Explainer(model_or_explainer, **model_options)
    raise TypeError(
        "model_or_explainer must be an nbx.Explainer or a torch.nn.Module; "
        f"got {type(model_or_explainer).__name__}"
    )


def shown_methods() -> list[str]:
    """The methods a widget can show: those that give a map over the image."""
    return [m.name for m in registry.all_methods() if m.shows_a_map]


def check_method(method: str) -> registry.Method:
    """The registered method ``method``, if it gives a map over the image."""
    spec = registry.get(method)
    if not spec.shows_a_map:
        raise ValueError(
            f"method {method!r} does not give a map over the image; valid: {shown_methods()}"
        )
    return spec


def check_params(value: Any, spec: registry.Method) -> dict[str, Any]:
    """Some of ``spec``'s parameters, bound: every one, defaults filled in."""
    if not isinstance(value, dict):
        raise TypeError(f"params must be a dict; got {type(value).__name__}")
    return spec.bind(value)


def check_layer(explainer: Explainer, layer: str) -> str:
    find_module(explainer.model, layer)
    return layer


def default_layer(explainer: Explainer) -> str | None:
    layers = explainer.layers()
    return layers[-1] if layers else None


def check_opacity(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"opacity must be a number in [0, 1]; got {value!r}")
    return float(value)


def check_cmap(value: Any) -> str | None:
    if value is not None and value not in render.colormaps():
        raise ValueError(f"cmap must be None (automatic) or one of {render.colormaps()}; got {value!r}")
    return value


def check_mode(value: Any) -> str:
    if value not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}; got {value!r}")
    return value


def check_brush_size(value: Any, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= limit:
        raise ValueError(f"brush_size must be an int in [1, {limit}]; got {value!r}")
    return int(value)


def check_index(index: Any, count: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise ValueError(f"index must be an int in [0, {count - 1}]; got {index!r}")
    return index


def prepare_image(explainer: Explainer, image: Any):
    """``image`` as the model-ready ``(1, C, H, W)`` tensor; errors name ``image``."""
    return explainer.prepare(to_batch(image, explainer.preprocess, explainer.device, name="image"))
