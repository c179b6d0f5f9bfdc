"""How a layer's output lies on the image grid: (N, C, H, W), channels-last (N, H, W, C), or tokens.

Every method that reads a layer as maps over the image (the CAM family, feature maps, ablation,
and the dataset scans' pooled features and peaks) goes through one ``Grid``: found from the
output's shape and the input's size, ``grid.maps(output)`` is the output as (N, C, h, w) — for
tokens (N, L, D), the ``prefix`` tokens (class, distillation, register tokens) dropped and the
rest laid on the patch grid, as pytorch-grad-cam's reshape functions do by hand. A gradient with
respect to the output maps the same way, so Grad-CAM at a ViT block is Grad-CAM on its patches.

Detection: a 4-D output is channels-first unless only the channels-last reading is the image
seen at one stride (Swin); a 3-D output (N, L, D) with D > 1 is tokens when, after at most
``MAX_PREFIX`` leading tokens (the model's own count, then the common ones first), the rest
tile the image at one whole stride (ViT: 197 = 1 + 14×14 at 224). Where a shape
cannot tell, ``layout=`` on the Explainer says it (``"nchw"``, ``"nhwc"``, ``"tokens"``, or
``tokens(prefix, h, w)``, per layer); the model's own ``num_prefix_tokens`` (timm) is used when
it has one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Union

import torch

Kind = Literal["nchw", "nhwc", "tokens"]
KINDS = ("nchw", "nhwc", "tokens")
MAX_PREFIX = 16  # leading non-patch tokens a token layout may have (class, distillation, registers)
COMMON_PREFIXES = (0, 1, 2, 5, 9)  # tried first: none, class, +distillation, +4 or +8 registers


@dataclass(frozen=True)
class Grid:
    """Where a layer's output lies: ``kind``, the ``(h, w)`` grid, and (tokens) the ``prefix``
    tokens before the patches."""

    kind: Kind
    size: tuple[int, int]
    prefix: int = 0

    def maps(self, output: torch.Tensor) -> torch.Tensor:
        """``output`` (or a gradient with respect to it) as ``(N, C, h, w)``; a view where the
        layout allows (channels-first and channels-last), else a copy."""
        h, w = self.size
        if self.kind == "nchw":
            return output
        if self.kind == "nhwc":
            return output.permute(0, 3, 1, 2)
        patches = output[:, self.prefix:]
        return patches.transpose(1, 2).reshape(output.shape[0], output.shape[2], h, w)

    def channels(self, output: torch.Tensor) -> int:
        return output.shape[1] if self.kind == "nchw" else output.shape[-1]

    def channel_view(self, keep: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """``keep`` (N, C) shaped to broadcast over ``output``'s channels in its own layout (every
        token of a token layout, prefix tokens too: a unit is off everywhere)."""
        if self.kind == "nchw":
            return keep.view(*keep.shape, *[1] * (output.ndim - 2))
        return keep.view(keep.shape[0], *[1] * (output.ndim - 2), keep.shape[1])

    def describe(self) -> str:
        h, w = self.size
        if self.kind == "tokens":
            return f"tokens ({self.prefix} before a {h}×{w} patch grid)"
        return f"{'channels-first' if self.kind == 'nchw' else 'channels-last'} {h}×{w}"


def tokens(prefix: int, h: int, w: int) -> Grid:
    """A token layout given by hand (for ``Explainer(layout=...)``)."""
    return Grid("tokens", (int(h), int(w)), int(prefix))


LayoutSpec = Union[Kind, Grid]  # noqa: UP007  (a type alias evaluated at run time on 3.10)
Layouts = Mapping[str, LayoutSpec]


def on_grid(size: Sequence[int], image: Sequence[int]) -> bool:
    """Whether an ``(h, w)`` map can be the ``(H, W)`` image seen at one stride (±1 cell for
    rounding and unpadded borders), with more than one position."""
    h, w = int(size[0]), int(size[1])
    height, width = int(image[0]), int(image[1])
    if h < 1 or w < 1 or h * w < 2:
        return False
    stride = (height + width) / (h + w)
    return abs(height / stride - h) <= 1 and abs(width / stride - w) <= 1


def patch_grid(count: int, image: Sequence[int]) -> tuple[int, int] | None:
    """The ``(h, w)`` grid of ``count`` patches tiling the ``(H, W)`` image at one whole stride
    (each side ``H / s`` rounded down or up): patches tile exactly, unlike unpadded convolutions."""
    height, width = int(image[0]), int(image[1])
    if count < 2:
        return None
    h = max(1, round(math.sqrt(count * height / width)))
    for rows in (h, h - 1, h + 1):
        if rows < 1 or count % rows:
            continue
        cols = count // rows
        for stride in {max(1, height // rows), max(1, -(-height // rows))}:
            sides = (height // stride, -(-height // stride)), (width // stride, -(-width // stride))
            if rows in sides[0] and cols in sides[1]:
                return rows, cols
    return None


def find_grid(shape: Sequence[int], image: Sequence[int], *, prefix: int | None = None,
              layout: LayoutSpec | None = None) -> Grid | None:
    """The grid of an output of ``shape`` from an input whose spatial size is ``image`` (H, W),
    or ``None`` when it has none (a pooled vector, logits). ``prefix``: the model's number of
    leading tokens; ``layout``: an override for this layer."""
    shape = tuple(int(n) for n in shape)
    if isinstance(layout, Grid):
        return layout
    if layout is not None and layout not in KINDS:
        raise ValueError(f"layout must be one of {list(KINDS)} or nbexplain.tokens(prefix, h, w); "
                         f"got {layout!r}")
    if len(shape) == 4 and layout in (None, "nchw", "nhwc"):
        first, last = on_grid(shape[2:], image), on_grid(shape[1:3], image)
        if layout == "nhwc" or (layout is None and last and not first):
            return Grid("nhwc", (shape[1], shape[2]))
        if layout == "nchw" or shape[2] * shape[3] > 1:
            return Grid("nchw", (shape[2], shape[3]))
        return None
    if len(shape) == 3 and layout in (None, "tokens") and (layout or shape[2] > 1):
        starts = [prefix] if prefix is not None else []
        for start in dict.fromkeys([*starts, *COMMON_PREFIXES, *range(MAX_PREFIX + 1)]):
            found = patch_grid(shape[1] - start, image)
            if found is not None:
                return Grid("tokens", found, start)
        return None
    if layout is not None:
        raise ValueError(f"layout {layout!r} does not fit an output of shape {shape}")
    return None


def check_layouts(layout: Layouts | None) -> dict[str, LayoutSpec]:
    """``Explainer(layout=...)`` checked: ``{layer: layout}`` for the layers whose shape cannot tell."""
    if layout is None:
        return {}
    if not isinstance(layout, Mapping):
        raise TypeError(
            "layout must be a dict {layer: layout}, each layout one of "
            f"{list(KINDS)} or nbexplain.tokens(prefix, h, w); got {type(layout).__name__}"
        )
    for name, value in layout.items():
        if not isinstance(name, str) or not (isinstance(value, Grid) or value in KINDS):
            raise ValueError(
                f"layout[{name!r}] must be one of {list(KINDS)} or nbexplain.tokens(prefix, h, w); "
                f"got {value!r}"
            )
    return dict(layout)


def prefix_tokens(model: torch.nn.Module) -> int | None:
    """The model's declared number of leading tokens (timm's ``num_prefix_tokens``), if any."""
    value = getattr(model, "num_prefix_tokens", None)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
