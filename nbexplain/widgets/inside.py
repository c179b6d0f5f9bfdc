"""The "inside" control: the sub-layers of the block the layer slider shows, one step away.

The slider walks ``Explainer.layers()`` (blocks and stages: a ViT-B's 12 blocks, not its 200
modules); this dropdown lists the chosen block's children whose output lies on the image grid
(a DeiT block's norm1, attn, norm2, mlp) and is hidden when there is none. The Explorer's
``layer`` field is the only state: a sub-layer picked here is the layer, and the slider shows
its block (``block_of``). The children are found in one traced forward, cached per model and
input size.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import ipywidgets as W
import torch
from torch import nn

from ..engine.grid import find_grid
from ..engine.layers import Trace
from .state import Options

WHOLE = "(whole block)"
WIDE = {"description_width": "initial"}
_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, dict[str, list[str]]]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _on_grid(explainer: Any, name: str, call: Any, image_hw: tuple[int, int]) -> bool:
    out = call.output
    if not isinstance(out, torch.Tensor) or out.ndim < 3 or out.shape[0] != 1 or out is call.input:
        return False  # not a map, or an identity (Identity, Dropout and DropPath in eval mode)
    try:
        grid = find_grid(out.shape, image_hw, prefix=explainer.prefix_tokens,
                         layout=explainer.layout.get(name))
    except ValueError:
        return False
    return grid is not None and grid.size[0] * grid.size[1] > 1


def sublayers(explainer: Any, x: torch.Tensor) -> dict[str, list[str]]:
    """``{block: its children on the image grid}`` for every block of ``explainer.layers()`` at
    the size of ``x`` (``(1, C, H, W)``); one traced forward, cached per model and input size."""
    model, size = explainer.model, tuple(x.shape)
    with _CACHE_LOCK:
        found = _CACHE.get(model, {}).get(size)
    if found is not None:
        return found
    blocks = explainer.layers()
    trace = Trace(model, lambda: model(x))  # eval mode, no autograd, its hooks removed after
    found = {}
    for block in blocks:
        children = []
        for child, _ in trace.modules[block].named_children():
            name = f"{block}.{child}"
            call = trace.once(name)
            if call is not None and _on_grid(explainer, name, call, tuple(x.shape[-2:])):
                children.append(name)
        found[block] = children
    with _CACHE_LOCK:
        _CACHE.setdefault(model, {})[size] = found
    return found


def block_of(layer: str | None, blocks: list[str]) -> str | None:
    """The block of ``blocks`` that holds ``layer`` (itself when it is one, or is in none)."""
    if layer is None:
        return None
    for block in blocks:
        if layer == block or layer.startswith(block + "."):
            return block
    return layer


class InsideControl:
    """A dropdown of the current block's sub-layers (and the whole block); a pick sets the
    owner's ``layer`` through ``owner.from_control``. ``owner`` is the Explorer (duck-typed)."""

    def __init__(self, owner: Any):
        self.owner = owner
        self.tree = sublayers(owner.explainer, owner.image_tensor)
        self.options = Options()  # show() replacing the options: not the user's pick
        self.dropdown = W.Dropdown(description="inside", options=[WHOLE], style=WIDE,
                                   tooltip="a sub-layer of the block the slider shows",
                                   layout=W.Layout(width="100%", display="none"))
        self.dropdown.observe(self._picked, names="value")

    def _picked(self, change: dict) -> None:
        if not self.options.replacing and change["new"] is not None:
            self.owner.from_control("layer", change["new"])

    def block(self, layer: str | None) -> str | None:
        """What the layer slider shows for ``layer``: its block."""
        return block_of(layer, list(self.tree))

    def show(self) -> None:
        """The current block's sub-layers, the layer picked; hidden where there are none or the
        method takes no free layer (a pixel method, CAM pinned at the last one)."""
        owner = self.owner
        block = self.block(owner.layer)
        children = self.tree.get(block, [])
        spec = owner.method_info
        visible = bool(children) and spec.needs_layer and not spec.last_layer_only
        self.dropdown.layout.display = "" if visible else "none"
        if not children:
            return
        names = [*children, *([owner.layer] if owner.layer not in (block, *children) else [])]
        options = [(WHOLE, block), *[(name[len(block) + 1:], name) for name in names]]  # one set from code
        value = owner.layer
        if list(self.dropdown.options) != options or self.dropdown.value != value:
            with self.options.replace():
                if list(self.dropdown.options) != options:
                    self.dropdown.options = options
                self.dropdown.value = value

    def widgets(self) -> list[W.Widget]:
        return [self.dropdown]
