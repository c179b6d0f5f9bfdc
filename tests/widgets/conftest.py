"""Fixtures the widget tests share: an Explainer on the tiny CNN with named classes, and an input."""

from __future__ import annotations

import pytest

import nbexplain as nbx
from tests.models import LABELS, TinyCNN, example_input


@pytest.fixture()
def ex() -> nbx.Explainer:
    return nbx.Explainer(TinyCNN().eval(), labels=LABELS)


@pytest.fixture()
def x():
    return example_input()[0]
