"""Pick the logits out of whatever a model returns, and check them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

OutputSpec = str | int | Callable[[Any], torch.Tensor] | None


def check_output_spec(output: OutputSpec) -> OutputSpec:
    if output is None or isinstance(output, (str, int)) or callable(output):
        return output
    raise TypeError(
        "output must be None, a key/attribute name (str), an index (int) or a callable that "
        f"returns the logits; got {type(output).__name__}"
    )


def select_logits(result: Any, output: OutputSpec, batch: int) -> torch.Tensor:
    """The ``(batch, classes)`` logits in ``result``, chosen by ``output``."""
    if output is None:
        logits = _default_logits(result)
    elif callable(output) and not isinstance(output, (str, int)):
        logits = output(result)
    elif isinstance(output, str):
        if isinstance(result, Mapping) and output in result:
            logits = result[output]
        elif hasattr(result, output):
            logits = getattr(result, output)
        else:
            raise ValueError(f"output={output!r}: the model's output has no such key; {_describe(result)}")
    else:
        try:
            logits = result[output]
        except (IndexError, KeyError, TypeError):
            raise ValueError(
                f"output={output!r}: cannot index the model's output; {_describe(result)}"
            ) from None
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"output: the selected model output is {type(logits).__name__}, expected a tensor of logits"
        )
    if logits.ndim != 2 or logits.shape[0] != batch:
        raise ValueError(
            f"output: expected logits of shape (N, classes) with N={batch}; got {tuple(logits.shape)}. "
            "Pass output= to the Explainer: a key, an index or a callable that picks or reshapes "
            "them (e.g. output=lambda out: out.flatten(1))"
        )
    return logits


def _default_logits(result: Any) -> torch.Tensor:
    if isinstance(result, torch.Tensor):
        return result
    if isinstance(result, Mapping) and "logits" in result:
        return result["logits"]
    if hasattr(result, "logits") and isinstance(result.logits, torch.Tensor):
        return result.logits
    raise ValueError(
        f"the model returns {type(result).__name__}, not a tensor; pass output= to the Explainer "
        f"(a key, an index or a callable that picks the logits); {_describe(result)}"
    )


def _describe(result: Any) -> str:
    if isinstance(result, Mapping):
        return f"its keys are {list(result.keys())}"
    if isinstance(result, (tuple, list)):
        kinds = [type(item).__name__ for item in result]
        return f"it is a {type(result).__name__} of {len(result)} items: {kinds}"
    fields = [name for name in vars(result)] if hasattr(result, "__dict__") else []
    return f"it is a {type(result).__name__}" + (f" with attributes {fields}" if fields else "")
