"""check_count: a wrong type is a TypeError, a wrong value a ValueError; both name the argument."""

from __future__ import annotations

import pytest

import nbexplain as nbx
from nbexplain.checks import check_count


@pytest.mark.parametrize("value", [1.0, "3", None, True, [2]])
def test_a_non_integer_is_a_type_error_naming_the_argument(value):
    with pytest.raises(TypeError, match="topk must be a positive int"):
        check_count(value, "topk")


@pytest.mark.parametrize(("value", "minimum"), [(0, 1), (-1, 0), (-5, 1)])
def test_a_small_integer_is_a_value_error(value, minimum):
    with pytest.raises(ValueError, match="cache must be a"):
        check_count(value, "cache", minimum=minimum)


def test_counts_that_fit_are_returned():
    assert check_count(3, "topk") == 3 and check_count(0, "cache", minimum=0) == 0


def test_public_calls_raise_the_type_error():
    import torch

    explainer = nbx.Explainer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)))
    with pytest.raises(TypeError, match="topk must be a positive int; got float"):
        explainer.predict(torch.zeros(3, 2, 2), topk=2.5)
