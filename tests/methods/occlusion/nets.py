"""Small models for the occlusion tests: spatially local, global, odd spatial ops, untraceable;
float64 weights for tight comparisons; Captum's occlusion as the reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from captum.attr import Occlusion
from torch import nn

from nbexplain.engine.perturb import baseline_image

torch.set_default_dtype(torch.float32)


# -- models ----------------------------------------------------------------------------------
def _init(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and BatchNorm statistics, eval mode, float64 (tight comparisons)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                if name.endswith("running_var"):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
                else:
                    tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.4)
    return model.double().eval()


class ResBlock(nn.Module):
    def __init__(self, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.down = nn.Conv2d(channels, channels, 1, stride, bias=False) if stride > 1 else nn.Identity()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.down(x)
        return self.relu(out)


class LocalNet(nn.Module):
    """A small ResNet: conv/BN/in-place ReLU, max pool, residual adds, a strided 1×1 shortcut."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.block1, self.block2 = ResBlock(6), ResBlock(6, stride=2)
        self.fc = nn.Linear(6, 7)

    def forward(self, x):
        x = self.block2(self.block1(self.pool(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class GlobalNet(nn.Module):
    """Not spatially local: per-image normalisation first, a squeeze-excitation gate, a global
    token-mixing layer — every pixel reaches every activation."""

    def __init__(self, size: tuple[int, int]):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 3, padding=1)
        self.se = nn.Linear(5, 5)
        self.conv2 = nn.Conv2d(5, 5, 3, stride=2, padding=1)
        tokens = ((size[0] + 1) // 2) * ((size[1] + 1) // 2)
        self.mix = nn.Linear(tokens, tokens)
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        x = x - x.mean(dim=(2, 3), keepdim=True)
        x = torch.relu(self.conv1(x))
        x = x * torch.sigmoid(self.se(x.mean((2, 3))))[:, :, None, None]
        x = self.conv2(x)
        b, c, h, w = x.shape
        x = self.mix(x.flatten(2)).view(b, c, h, w)
        return self.fc(x.relu().amax((2, 3)))


class SameConv(nn.Conv2d):
    """TensorFlow 'SAME' padding (asymmetric), like timm's Conv2dSame."""

    def forward(self, x):
        pads = []
        for size, k, s in zip(x.shape[:1:-1], self.kernel_size[::-1], self.stride[::-1], strict=True):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class OddNet(nn.Module):
    """The spatial ops' corner cases: TF-'SAME' subclass, dilation, depthwise, average pool with
    padding, ceil-mode max pool, channel concatenation, functional in-place ReLU, ``x.size()``,
    a constant per-channel scale and a Dropout."""

    def __init__(self):
        super().__init__()
        self.same = SameConv(3, 4, 3, stride=2, bias=False)
        self.dilated = nn.Conv2d(4, 4, 3, padding=2, dilation=2)
        self.depthwise = nn.Conv2d(8, 8, 5, padding=2, groups=8)
        self.avg = nn.AvgPool2d(3, 1, 1)
        self.maxpool = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.hswish = nn.Hardswish()
        self.drop = nn.Dropout(0.3)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 8).view(1, 8, 1, 1))
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        a = self.same(x)
        b = F.relu(self.dilated(a), inplace=True)
        x = torch.cat([a, b], dim=1) * self.scale
        x = self.hswish(self.depthwise(self.avg(x))) + 0.1
        x = self.drop(self.maxpool(x))
        return self.fc(x.view(x.size(0), x.size(1), -1).mean(-1))


class Untraceable(LocalNet):
    """Data-dependent control flow: torch.fx cannot trace it (plain forwards are used)."""

    def forward(self, x):
        if x.sum() > 1e9:
            x = x * 0
        return super().forward(x)


MODELS = {
    "local": lambda size: _init(LocalNet(), 0),
    "global": lambda size: _init(GlobalNet(size), 1),
    "odd": lambda size: _init(OddNet(), 2),
    "untraceable": lambda size: _init(Untraceable(), 3),
}


def example(shape=(3, 19, 17), seed=0) -> torch.Tensor:
    return torch.randn((1, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def captum(model, x, patch, stride, baseline, target):
    base = baseline_image(x, baseline) if isinstance(baseline, str) else baseline
    channels = x.shape[1]
    return Occlusion(model).attribute(
        x, sliding_window_shapes=(channels, patch, patch), strides=(channels, stride, stride),
        baselines=base, target=target, perturbations_per_eval=5,
    )[0]
