"""Class labels and target resolution: ``None`` (top-1), an index, or a label string."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch


class Prediction(NamedTuple):
    index: int
    label: str
    prob: float


class Labels:
    """Class names by index; missing names read ``"class <i>"``."""

    def __init__(self, labels: Sequence[str] | Mapping[int, str] | None):
        if labels is None:
            self._names: dict[int, str] = {}
        elif isinstance(labels, Mapping):
            self._names = {int(k): str(v) for k, v in labels.items()}
        elif isinstance(labels, Sequence) and not isinstance(labels, str):
            self._names = {i: str(name) for i, name in enumerate(labels)}
        else:
            raise TypeError(
                f"labels must be a sequence of class names or a dict index -> name; "
                f"got {type(labels).__name__}"
            )

    def __len__(self) -> int:
        return len(self._names)

    def name(self, index: int) -> str:
        return self._names.get(index, f"class {index}")

    def names(self) -> list[str]:
        return [self._names[i] for i in sorted(self._names)]

    def index(self, label: str) -> int:
        """The index of ``label`` (exact, then case-insensitive); a ``ValueError`` suggests near names."""
        exact = [i for i, name in self._names.items() if name == label]
        if not exact:
            lowered = label.strip().lower()
            exact = [i for i, name in self._names.items() if name.lower() == lowered]
        if exact:
            return exact[0]
        if not self._names:
            raise ValueError(
                f"target={label!r} is a label, but the Explainer has no labels; pass labels= "
                "or give the target as a class index"
            )
        close = difflib.get_close_matches(label, list(self._names.values()), n=5, cutoff=0.5)
        hint = f"; did you mean one of {close}?" if close else "; see Explainer.labels"
        raise ValueError(f"target={label!r} is not a known label{hint}")


def resolve_target(target, labels: Labels, classes: int | None = None) -> int | None:
    """An int class index, or ``None`` for top-1."""
    if target is None:
        return None
    if isinstance(target, torch.Tensor):
        if target.numel() != 1:
            raise ValueError(
                "target must be one class (None, an int or a label); "
                f"got a tensor of shape {tuple(target.shape)}"
            )
        target = target.item()
    if isinstance(target, bool):
        raise TypeError("target must be None, a class index (int) or a label (str); got bool")
    if isinstance(target, numbers.Integral):
        index = int(target)
        count = classes if classes is not None else (len(labels) or None)
        if index < 0 or (count is not None and index >= count):
            valid = f"0..{count - 1}" if count else "a non-negative index"
            raise ValueError(f"target={index} is out of range; valid: {valid}")
        return index
    if isinstance(target, str):
        return labels.index(target)
    raise TypeError(
        f"target must be None, a class index (int) or a label (str); got {type(target).__name__}"
    )


def top_predictions(logits: torch.Tensor, labels: Labels, topk: int) -> list[Prediction]:
    """The ``topk`` classes of one row of logits, best first, with softmax probabilities."""
    probs = logits.detach().float().reshape(-1).softmax(0)
    values, indices = probs.topk(min(topk, probs.numel()))
    return [Prediction(int(i), labels.name(int(i)), float(v)) for v, i in zip(values, indices, strict=True)]
