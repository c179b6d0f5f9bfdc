"""Shared fixtures: the tiny models of ``tests/models.py`` (fresh per test, so a test may change
them) and a matching input. ``ModelState`` (``tests/untouched.py``) checks a model is unchanged."""

from __future__ import annotations

import pytest
import torch
import torchvision

from tests.models import ReusedReLUNet, TinyCNN, example_input


@pytest.fixture
def relu_inplace_model() -> torch.nn.Module:
    """conv → nn.ReLU(inplace=True) ×3 → GAP → linear, eval mode, 10 classes."""
    return TinyCNN("nn.ReLU(inplace)").eval()


@pytest.fixture
def functional_relu_model() -> torch.nn.Module:
    """The same network with ``F.relu`` calls instead of modules."""
    return TinyCNN("F.relu").eval()


@pytest.fixture
def relu6_model() -> torch.nn.Module:
    """The same network with ``nn.ReLU6`` modules (the pre-activations reach above 6)."""
    return TinyCNN("nn.ReLU6").eval()


@pytest.fixture
def reused_relu_bn_model() -> torch.nn.Module:
    """ResNet-like: one in-place ReLU module called twice per block, BatchNorm with running
    statistics, dropout; in train mode, as handed over mid-training."""
    return ReusedReLUNet()


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    """torchvision's ResNet-18, random weights (seed 0), 10 classes, eval mode; one per module."""
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    """A (1, 3, 64, 64) random input (seed 1) for ``resnet``."""
    torch.manual_seed(1)
    return torch.randn(1, 3, 64, 64)


@pytest.fixture
def tiny_input() -> torch.Tensor:
    """A (1, 3, 16, 16) input for the tiny models."""
    return example_input()


def pytest_configure(config):
    """One intra-op thread: the test models are tiny, and on a busy machine OpenMP threads waiting
    for each other make every op of a tiny model orders of magnitude slower."""
    torch.set_num_threads(1)
