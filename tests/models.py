"""Tiny models shared by the tests: every rectifier spelling, reused modules, BatchNorm in train
mode, odd output types, and models that fail on demand. All run in milliseconds on a CPU.

``TinyCNN(act)`` is the workhorse: conv → act → conv(stride 2) → act → conv → act → GAP → linear,
with the activation spelled as ``act`` says (see ``ACTIVATIONS``) or given as a callable
``act(x) -> y`` (the paper-faithful reference rectifiers in the tests pass one).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# name -> (upper clamp or None, True when the spelling is an nn.Module that Captum can hook)
ACTIVATIONS: dict[str, tuple[float | None, bool]] = {
    "nn.ReLU": (None, True),
    "nn.ReLU(inplace)": (None, True),
    "F.relu": (None, False),
    "F.relu(inplace)": (None, False),
    "F.relu_": (None, False),
    "torch.relu": (None, False),
    "torch.relu_": (None, False),
    "Tensor.relu": (None, False),
    "Tensor.relu_": (None, False),
    "nn.ReLU6": (6.0, False),
    "nn.ReLU6(inplace)": (6.0, False),
    "F.relu6": (6.0, False),
    "F.relu6(inplace)": (6.0, False),
    "F.hardtanh(0,6)": (6.0, False),
    "F.hardtanh_(0,6)": (6.0, False),
    "nn.Hardtanh(0,6)": (6.0, False),
}
FUNCTIONAL = [name for name, (_, hookable) in ACTIVATIONS.items() if not hookable]

_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "F.relu": F.relu,
    "F.relu(inplace)": lambda x: F.relu(x, inplace=True),
    "F.relu_": F.relu_,
    "torch.relu": torch.relu,
    "torch.relu_": torch.relu_,
    "Tensor.relu": lambda x: x.relu(),
    "Tensor.relu_": lambda x: x.relu_(),
    "F.relu6": F.relu6,
    "F.relu6(inplace)": lambda x: F.relu6(x, inplace=True),
    "F.hardtanh(0,6)": lambda x: F.hardtanh(x, 0.0, 6.0),
    "F.hardtanh_(0,6)": lambda x: F.hardtanh_(x, min_val=0.0, max_val=6.0),
}
_MODULES: dict[str, Callable[[], nn.Module]] = {
    "nn.ReLU": nn.ReLU,
    "nn.ReLU(inplace)": lambda: nn.ReLU(inplace=True),
    "nn.ReLU6": nn.ReLU6,
    "nn.ReLU6(inplace)": lambda: nn.ReLU6(inplace=True),
    "nn.Hardtanh(0,6)": lambda: nn.Hardtanh(0.0, 6.0),
}

LABELS = [f"c{i}" for i in range(10)]  # names for the tiny models' 10 classes


class TinyCNN(nn.Module):
    """conv → act → conv(stride 2) → act → conv → act → GAP → linear; input (3, 16, 16).

    Weights are drawn from ``seed`` and scaled so that, on ``example_input()``, a good share of
    pre-activations is negative and (for the ReLU6 spellings) a good share is above 6.
    """

    def __init__(self, act: str | Callable[[torch.Tensor], torch.Tensor] = "nn.ReLU", classes: int = 10,
                 seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(12, 16, 3, padding=1)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(16, classes)
        with torch.no_grad():
            for layer in (self.conv1, self.conv2, self.conv3, self.fc):
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 2.0 / fan_in**0.5)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.5)
        self.act_name = act if isinstance(act, str) else getattr(act, "__name__", "custom")
        if isinstance(act, str) and act in _MODULES:
            self.act1, self.act2, self.act3 = (_MODULES[act]() for _ in range(3))
        elif isinstance(act, str):
            if act not in _FUNCTIONS:
                raise ValueError(f"unknown act {act!r}; valid: {list(ACTIVATIONS)}")
            self._fn = _FUNCTIONS[act]
        else:
            self._fn = act

    def _act(self, i: int, x: torch.Tensor) -> torch.Tensor:
        module = getattr(self, f"act{i}", None)
        return module(x) if module is not None else self._fn(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._act(1, self.conv1(x))
        x = self._act(2, self.conv2(x))
        x = self._act(3, self.conv3(x))
        return self.fc(self.pool(x))


def example_input(seed: int = 1, shape: tuple[int, ...] = (3, 16, 16), scale: float = 2.0) -> torch.Tensor:
    """A reproducible ``(1, *shape)`` input."""
    return torch.randn((1, *shape), generator=torch.Generator().manual_seed(seed)) * scale


class TinyMLP(nn.Module):
    """flatten → linear → ReLU → linear → ReLU → linear, small enough for a hand-written backward."""

    def __init__(self, inputs: int = 3 * 4 * 4, hidden: int = 24, classes: int = 5, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.fc1, self.fc2 = nn.Linear(inputs, hidden), nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, classes)
        with torch.no_grad():
            for layer in (self.fc1, self.fc2, self.fc3):
                scale = layer.in_features**-0.5
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * scale)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.3)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x.flatten(1))))))


class BasicBlock(nn.Module):
    """torchvision ResNet's BasicBlock: one in-place ReLU module called twice."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class ReusedReLUNet(nn.Module):
    """stem (conv, BN, ReLU) → two BasicBlocks → dropout → GAP + linear head.

    Built with running statistics that differ from the defaults (a few train-mode passes), and
    handed back in train mode, as a model in the middle of training would be.
    """

    def __init__(self, classes: int = 10, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True)
        )
        self.layer1 = nn.Sequential(BasicBlock(8), BasicBlock(8))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, classes)
        with torch.no_grad():
            for _ in range(3):
                self(torch.randn(4, 3, 16, 16) * 2 + 0.5)
        self.train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(self.stem(x))
        return self.fc(self.drop(self.pool(x)))


class Wrapped(nn.Module):
    """``inner``'s logits returned as ``kind``: "tuple", "list", "dict", "dict-nologits",
    "hf" (an object with ``.logits``, like Hugging Face's ModelOutput), "ordered" (an OrderedDict
    subclass with attributes, exactly ModelOutput's shape), or a bad one: "1d", "4d", "int"."""

    def __init__(self, inner: nn.Module, kind: str):
        super().__init__()
        self.inner, self.kind = inner, kind

    def forward(self, x: torch.Tensor):
        logits = self.inner(x)
        features = logits.detach() * 0
        if self.kind == "tuple":
            return logits, features
        if self.kind == "list":
            return [features, logits]
        if self.kind == "dict":
            return {"features": features, "logits": logits}
        if self.kind == "dict-nologits":
            return {"features": features, "scores": logits}
        if self.kind == "hf":
            return HFLikeOutput(logits=logits, hidden_states=(features,))
        if self.kind == "ordered":
            return ModelOutputLike(logits=logits, hidden_states=features)
        if self.kind == "1d":
            return logits[:, 0]
        if self.kind == "4d":
            return logits[:, :, None, None]
        if self.kind == "int":
            return 3
        raise ValueError(self.kind)


class HFLikeOutput:
    """A plain object with a ``logits`` attribute."""

    def __init__(self, logits: torch.Tensor, hidden_states: tuple):
        self.logits = logits
        self.hidden_states = hidden_states


class ModelOutputLike(OrderedDict):
    """Like ``transformers.utils.ModelOutput``: a mapping whose keys are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class _Failing:
    """Raise ``Boom`` in the forward or the backward while ``fail`` is "forward" or "backward";
    with ``fail = "count"``, only count forward and backward calls in ``counts``.

    The backward tripwire is a hook on the output tensor, so the autograd graph (which LRP reads)
    is the plain model's."""

    fail: str | None = None  # also while a subclass's __init__ runs warm-up passes

    def _start_forward(self) -> None:
        if self.fail == "forward":
            raise Boom("forward failed on purpose")
        if self.fail == "count":
            self.counts["forward"] += 1

    def _arm(self, y: torch.Tensor) -> torch.Tensor:
        if self.fail in ("backward", "count") and y.requires_grad:
            y.register_hook(self._tripwire)
        return y

    def _tripwire(self, grad: torch.Tensor) -> None:
        if self.fail == "backward":
            raise Boom("backward failed on purpose")
        self.counts["backward"] += 1


class FailingNet(_Failing, nn.Module):
    """``inner`` wrapped, failing on demand (see ``_Failing``)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.fail = None
        self.counts = {"forward": 0, "backward": 0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._start_forward()
        return self._arm(self.inner(x))


class FailingReusedReLUNet(_Failing, ReusedReLUNet):
    """``ReusedReLUNet`` itself failing on demand (no wrapper, so its layers are found as usual)."""

    def __init__(self, classes: int = 10, seed: int = 0):
        super().__init__(classes, seed)
        self.fail = None
        self.counts = {"forward": 0, "backward": 0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._start_forward()
        return self._arm(super().forward(x))


class Boom(RuntimeError):
    """The error the failing models and callbacks raise."""
