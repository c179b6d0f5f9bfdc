"""Changed rectangles of a batch of activations, and convolutions and pools on regions.

The incremental occlusion runner (``runner.py``) keeps, for N occluded copies of one image,
each activation as the clean one plus one same-sized changed rectangle per image (``Patched``).
Here: gathering a rectangle with its halo, pasting patches into full activations, how far a
change reaches through a convolution or pool (``reach``), and such an op as a function of a
padded region (``Spatial``), checked against the module's own output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# Force (True/False) or leave to the device (None) how patches are gathered; see ``vectorized``.
VECTORIZED: bool | None = None


def stacked(crops: Sequence[torch.Tensor], memory_format: torch.memory_format) -> torch.Tensor:
    """``torch.stack(crops)`` in ``memory_format`` (the incremental runner's: channels-last where
    the model takes it)."""
    first = crops[0]
    out = torch.empty((len(crops), *first.shape), dtype=first.dtype, device=first.device,
                      memory_format=memory_format)
    for n, crop in enumerate(crops):
        out[n] = crop
    return out


def same_order(clean: torch.Tensor) -> torch.memory_format:
    """The memory order of ``clean``, so a full batch built from it behaves as it did (a
    ``.view`` downstream works on one and not on the other)."""
    channels_last = clean.ndim == 4 and clean.is_contiguous(memory_format=torch.channels_last)
    if channels_last and not clean.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


@dataclass
class Patched:
    """An activation of N occluded images: ``clean`` (1, C, H, W) everywhere except, for image
    n, the rectangle at (``top[n]``, ``left[n]``) of size ``patch.shape[-2:]`` holding ``patch[n]``."""

    clean: torch.Tensor
    patch: torch.Tensor
    top: list[int]
    left: list[int]
    _dense: torch.Tensor | None = None

    @property
    def count(self) -> int:
        return self.patch.shape[0]

    def same_rects(self, other: Patched) -> bool:
        return (self.patch.shape[-2:] == other.patch.shape[-2:] and self.top == other.top
                and self.left == other.left)

    def dense(self) -> torch.Tensor:
        """The full ``(N, C, H, W)`` batch (computed once)."""
        if self._dense is None:
            full = self.clean.expand(self.count, *self.clean.shape[1:])
            out = full.clone(memory_format=same_order(self.clean))
            h, w = self.patch.shape[-2:]
            if not vectorized(out.device):
                for n, (t, c) in enumerate(zip(self.top, self.left, strict=True)):
                    out[n, :, t:t + h, c:c + w] = self.patch[n]
                self._dense = out
                return out
            rows, cols = _spans(self.top, h, out.device), _spans(self.left, w, out.device)
            images = torch.arange(self.count, device=out.device)[:, None, None]
            channels_last = out.permute(0, 2, 3, 1)
            channels_last[images, rows[:, :, None], cols[:, None, :]] = self.patch.permute(0, 2, 3, 1)
            self._dense = out
        return self._dense

    def region(self, before: tuple[int, int], fill: float, tops, lefts, h: int, w: int,
               padded_clean: torch.Tensor | None = None):
        """Per image, the ``h``×``w`` crop at (``tops[n]``, ``lefts[n]``) of this activation's
        clean value padded by ``before`` with ``fill`` (coordinates of the padded activation),
        with this patch pasted over it. On the CPU one slice copy per image reads the clean
        value itself; an accelerator gathers with one kernel from ``padded_clean`` (the clean
        value already padded so; needed unless ``before`` is (0, 0))."""
        if vectorized(self.patch.device):
            if padded_clean is None and tuple(before) != (0, 0):
                raise ValueError("region: a padded region on an accelerator needs padded_clean")
            source = self.clean if padded_clean is None else padded_clean
            return self._gather(source, before, tops, lefts, h, w)
        clean = self.clean
        height, width = clean.shape[-2:]
        crops = torch.empty((self.count, clean.shape[1], h, w), dtype=clean.dtype, device=clean.device,
                            memory_format=same_order(self.patch))
        for n, (t, c) in enumerate(zip(tops, lefts, strict=True)):
            top, left = t - before[0], c - before[1]  # the crop's corner in unpadded coordinates
            r0, r1 = max(0, top), min(height, top + h)
            c0, c1 = max(0, left), min(width, left + w)
            if (r0, r1, c0, c1) != (top, top + h, left, left + w):
                crops[n].fill_(fill)
            if r0 < r1 and c0 < c1:
                crops[n, :, r0 - top:r1 - top, c0 - left:c1 - left] = clean[0, :, r0:r1, c0:c1]
        return self._paste(crops, before, tops, lefts, h, w)

    def _gather(self, source: torch.Tensor, shift: tuple[int, int], tops, lefts, h: int, w: int):
        """``region`` as one gather from ``source`` (the clean value padded by ``shift``) and one
        ``where`` with the patch."""
        device = source.device
        rows, cols = _spans(tops, h, device), _spans(lefts, w, device)
        crops = source[0].permute(1, 2, 0)[rows[:, :, None], cols[:, None, :]]  # (N, h, w, C)
        ph, pw = self.patch.shape[-2:]
        in_rows = rows - _on(self.top, device)[:, None] - shift[0]
        in_cols = cols - _on(self.left, device)[:, None] - shift[1]
        inside = ((in_rows >= 0) & (in_rows < ph))[:, :, None] & ((in_cols >= 0) & (in_cols < pw))[:, None, :]
        images = torch.arange(self.count, device=device)[:, None, None]
        values = self.patch.permute(0, 2, 3, 1)[
            images, in_rows.clamp(0, ph - 1)[:, :, None], in_cols.clamp(0, pw - 1)[:, None, :]]
        return torch.where(inside[..., None], values, crops).permute(0, 3, 1, 2)

    def _paste(self, crops, shift, tops, lefts, h, w):
        """This patch pasted over ``crops`` (regions at ``tops``/``lefts``, shifted coordinates)."""
        ph, pw = self.patch.shape[-2:]
        for n, (t, c) in enumerate(zip(tops, lefts, strict=True)):
            pt, pl = self.top[n] + shift[0], self.left[n] + shift[1]
            r0, r1 = max(pt, t), min(pt + ph, t + h)
            c0, c1 = max(pl, c), min(pl + pw, c + w)
            if r0 < r1 and c0 < c1:
                crops[n, :, r0 - t:r1 - t, c0 - c:c1 - c] = self.patch[n, :, r0 - pt:r1 - pt, c0 - pl:c1 - pl]
        return crops


def vectorized(device: torch.device) -> bool:
    """Gather and paste with one indexing kernel (accelerators: fewer launches) rather than a
    slice per image (CPU: measured faster)."""
    return VECTORIZED if VECTORIZED is not None else device.type != "cpu"


def _spans(starts: Sequence[int], length: int, device) -> torch.Tensor:
    """``(N, length)`` indices ``start, start+1, …`` for each start."""
    return _on(starts, device)[:, None] + torch.arange(length, device=device)


def _on(values: Sequence[int], device: torch.device) -> torch.Tensor:
    """A small index tensor on ``device``; to a GPU through pinned memory, without a sync."""
    tensor = torch.tensor(values)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


# -- geometry --------------------------------------------------------------------------------
def reach(starts: Sequence[int], length: int, k: int, s: int, d: int, before: int, size_out: int):
    """Along one axis: the outputs a changed interval [start, start+length) reaches, as a common
    length and per-image starts, and the (padded) input interval needed to recompute them."""
    lows, highs = [], []
    for a in starts:
        lows.append(max(0, -((-(a + before - (k - 1) * d)) // s)))
        highs.append(min(size_out - 1, (a + length - 1 + before) // s))
    out_len = min(size_out, max(1, *(hi - lo + 1 for lo, hi in zip(lows, highs, strict=True))))
    out_starts = [min(lo, size_out - out_len) for lo in lows]
    in_len = (out_len - 1) * s + (k - 1) * d + 1
    return out_starts, out_len, [o * s for o in out_starts], in_len


@dataclass(frozen=True)
class Spatial:
    """A convolution or pool as ``fn(padded region)``: window geometry and padding value."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    before: tuple[int, int]  # padding above and left of the input
    value: float  # what the padding holds


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _tf_same(size: int, k: int, s: int, d: int) -> int:
    """Padding before the input for TensorFlow 'SAME' (timm's ``Conv2dSame``)."""
    total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2


def padded_size(spec: Spatial, out_size: tuple[int, int]) -> tuple[int, int]:
    """Height and width of the padded input that ``spec.fn`` turns into ``out_size``."""
    return tuple((out_size[a] - 1) * spec.stride[a] + (spec.kernel[a] - 1) * spec.dilation[a] + 1
                 for a in (0, 1))


def padded(x: torch.Tensor, spec: Spatial, out_size: tuple[int, int]) -> torch.Tensor:
    """``x`` padded so that ``spec.fn`` on it gives exactly ``out_size``."""
    pads = []
    for axis in (1, 0):  # F.pad wants (left, right, top, bottom)
        k, s, d, b = spec.kernel[axis], spec.stride[axis], spec.dilation[axis], spec.before[axis]
        needed = (out_size[axis] - 1) * s + (k - 1) * d + 1
        pads += [b, needed - x.shape[2 + axis] - b]
    return F.pad(x, pads, value=spec.value)


def spatial_spec(module: nn.Module, clean_in: torch.Tensor, clean_out: torch.Tensor) -> Spatial | None:
    """``module`` as a ``Spatial`` op, checked against its output on the clean input; ``None``
    when it is not one we can recompute on regions exactly."""
    size = tuple(clean_in.shape[-2:])
    candidates: list[Spatial] = []
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            return None
        k, s, d = _pair(module.kernel_size), _pair(module.stride), _pair(module.dilation)

        def conv(r, m=module):
            return F.conv2d(r, m.weight, m.bias, m.stride, 0, m.dilation, m.groups)

        if module.padding == "valid":
            declared = (0, 0)
        elif module.padding == "same":
            declared = (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
        else:
            declared = _pair(module.padding)
        candidates.append(Spatial(conv, k, s, d, declared, 0.0))
        if type(module) is not nn.Conv2d:  # a subclass may pad its own way (e.g. TF 'SAME')
            same = (_tf_same(size[0], k[0], s[0], d[0]), _tf_same(size[1], k[1], s[1], d[1]))
            candidates.append(Spatial(conv, k, s, d, same, 0.0))
    elif isinstance(module, nn.MaxPool2d):
        if module.return_indices:
            return None
        k, d = _pair(module.kernel_size), _pair(module.dilation)
        s = _pair(module.stride if module.stride is not None else module.kernel_size)

        def maxpool(r, k=k, s=s, d=d):
            return F.max_pool2d(r, k, s, 0, d)

        candidates.append(Spatial(maxpool, k, s, d, _pair(module.padding), float("-inf")))
    elif isinstance(module, nn.AvgPool2d):
        k = _pair(module.kernel_size)
        s = _pair(module.stride if module.stride is not None else module.kernel_size)
        padding = _pair(module.padding)
        if module.ceil_mode or (padding != (0, 0) and not module.count_include_pad):
            return None

        def avgpool(r, k=k, s=s, m=module):
            return F.avg_pool2d(r, k, s, 0, divisor_override=m.divisor_override)

        candidates.append(Spatial(avgpool, k, s, (1, 1), padding, 0.0))
    out_size = tuple(clean_out.shape[-2:])
    for spec in candidates:
        if type(module) in (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d):
            return spec
        try:
            probe = spec.fn(padded(clean_in, spec, out_size))
        except RuntimeError:
            continue
        if probe.shape == clean_out.shape and torch.allclose(probe, clean_out, rtol=1e-4, atol=1e-5):
            return spec
    return None
