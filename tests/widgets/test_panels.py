"""The Explorer's feature-map and filter panels, opened and clicked as a user would (the accordion's
``selected_index``, a mouse-down at canvas pixels): their size, labels, colours, the chosen tile,
a channel that must not outlive its layer, and a 1×1 convolution's filters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nbexplain as nbx
from nbexplain import montage, render
from nbexplain.widgets.explorer import Explorer
from nbexplain.widgets.panels import COLUMNS, GAP, MAX_TILES
from tests.models import example_input


class Wide(nn.Module):
    """72 feature maps (more than a panel shows), then a 1×1 convolution down to 8."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.act1 = nn.Conv2d(3, 72, 3, padding=1), nn.ReLU()
        self.conv2, self.act2 = nn.Conv2d(72, 8, 1), nn.ReLU()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.pool(self.act2(self.conv2(self.act1(self.conv1(x))))).flatten(1))


@pytest.fixture()
def explorer():
    explorer = Explorer(nbx.Explainer(Wide().eval()), example_input()[0], layer="act1").wait(30)
    yield explorer
    explorer.close()


def open_panel(explorer, index):
    explorer.panels.selected_index = index
    explorer.wait(30)
    return explorer.features if index == 0 else explorer.filters


def centre(panel, position):
    """Canvas pixel at the middle of tile ``position``."""
    top, left = panel.grid.origin(position)
    return left + panel.grid.tile_w // 2, top + panel.grid.tile_h // 2


def test_feature_panel_has_a_bounded_size_and_numbered_tiles(explorer):
    panel = open_panel(explorer, 0)
    canvas, picture = panel.canvas, panel.picture
    assert len(panel.tiles) == MAX_TILES and "64 of 72 channels" in panel.note.value
    assert picture.shape[:2] == (canvas.height, canvas.width) == panel.grid.shape
    # its own size in CSS pixels: never stretched to the output's width (was ~1170 px wide)
    assert (canvas.layout.width, canvas.layout.height) == (f"{canvas.width}px", f"{canvas.height}px")
    assert canvas.width <= 420 and canvas.height <= 460 and panel.grid.columns == COLUMNS
    # each tile's label strip carries its channel number, drawn as montage draws that number
    for position in (0, 1, 9):
        top, left = panel.grid.origin(position)
        strip = picture[top - montage.LABEL:top, left:left + panel.grid.tile_w]
        blank = np.zeros((1, *panel.values.shape[1:]))
        reference, grid = montage.colour_tiles(blank, [panel.tiles[position]], cmap="jet", pad=GAP,
                                               labels=True)
        ref_top, ref_left = grid.origin(0)
        expected = reference[ref_top - montage.LABEL:ref_top, ref_left:ref_left + grid.tile_w]
        np.testing.assert_array_equal(strip, expected)
        assert (strip.max(axis=2) < 80).any()  # there is text, dark on the light padding
        assert panel.tile_at(left + 2, top - montage.LABEL + 2) == panel.tiles[position]  # labels click too


def test_feature_panel_uses_the_overlays_colormap_and_a_padding_no_value_has(explorer):
    panel = open_panel(explorer, 0)
    top, left = panel.grid.origin(0)
    tile = panel.picture[top:top + panel.grid.tile_h, left:left + panel.grid.tile_w]
    values = panel.values[0]
    np.testing.assert_array_equal(tile, render.colorize(values, "jet"))  # "auto": jet, as on the canvas
    assert (panel.picture[0, 0] == montage.NEUTRAL).all()  # not white, not the colormap's end
    lut = render.lut("viridis")
    explorer.controls.cmap.value = "viridis"  # no recomputation: repainted from what it has
    assert explorer.scheduler.idle
    tile = panel.picture[top:top + panel.grid.tile_h, left:left + panel.grid.tile_w]
    np.testing.assert_array_equal(tile, render.colorize(values, "viridis"))
    padding = panel.picture[0, 0]
    assert (padding == montage.NEUTRAL).all() and not (lut == padding).all(axis=1).any()
    explorer.cmap = "gray"
    assert (panel.picture[0, 0] == montage.TINT).all()  # gray tiles: a padding that is not a gray


def test_the_channel_shown_is_framed_in_the_panel(explorer):
    panel = open_panel(explorer, 0)
    assert not (panel.picture == montage.HIGHLIGHT).all(axis=2).any()
    panel._on_click(*centre(panel, 5))
    explorer.wait(30)
    channel = panel.tiles[5]
    assert explorer.method == "activations" and explorer.params["channel"] == channel
    top, left = panel.grid.origin(5)
    frame = panel.picture[top - montage.LABEL - GAP, left - GAP:left + panel.grid.tile_w + GAP]
    assert (frame == montage.HIGHLIGHT).all()  # the frame around tile 5 (and its label)
    assert (panel.picture[top - montage.LABEL + 1, left + panel.grid.tile_w - 2] == montage.HIGHLIGHT).all()
    explorer.params = {"channel": panel.tiles[0]}  # from code: the frame follows
    assert (panel.picture[top - montage.LABEL - GAP, left] != montage.HIGHLIGHT).any()
    first_top, first_left = panel.grid.origin(0)
    assert (panel.picture[first_top - montage.LABEL - GAP, first_left] == montage.HIGHLIGHT).all()
    explorer.method = "gradcam"  # nothing of the panel is shown over the image
    assert not (panel.picture == montage.HIGHLIGHT).all(axis=2).any()


def test_a_channel_does_not_carry_over_to_a_layer_with_fewer_channels(explorer):
    panel = open_panel(explorer, 0)
    explorer.select_channel(next(channel for channel in panel.tiles if channel >= 8))  # a tile's click
    explorer.wait(30)
    assert explorer.params["channel"] >= 8 and explorer.status == "ready"
    explorer.controls.layer.value = "act2"  # 8 channels: the channel number is reset, not clamped
    explorer.wait(30)
    assert explorer.params == {"channel": -1} and explorer.status == "ready" and explorer.error == ""
    e = explorer.explanation
    assert (e.method, e.layer, e.params["channel"]) == ("activations", "act2", -1)
    assert "act2: 8 of 8 channels" in panel.note.value
    explorer.set(layer="act1", params={"channel": 40})  # both at once: the given channel is kept
    explorer.wait(30)
    assert explorer.params["channel"] == 40 and explorer.explanation.params["channel"] == 40


def test_one_by_one_filters_are_shown_as_a_weight_matrix(explorer):
    explorer.layer = "act2"  # its filters: conv2, 1×1, 72 inputs → 8 outputs
    panel = open_panel(explorer, 1)
    weight = explorer.explainer.model.conv2.weight.detach()[:, :, 0, 0]  # (8, 72)
    assert "1×1" in panel.note.value and "8 of 8 filters × 72 of 72 input channels" in panel.note.value
    matrix = montage.weight_matrix(weight[:, :, None, None])
    np.testing.assert_array_equal(panel.picture, matrix.picture)
    # one cell per weight: column j is filter j, row i its weight on input i, on a signed scale
    limit = float(weight.abs().max())
    assert f"±{limit:.3g}" in panel.note.value
    cells = {tuple(c) for c in panel.picture.reshape(-1, 3)}
    assert len(cells) > 50  # not 8 identical gray squares
    assert (panel.canvas.layout.width, panel.canvas.width) == (f"{matrix.picture.shape[1]}px",
                                                               matrix.picture.shape[1])


def test_filter_montage_tiles_are_numbered_and_separated(explorer):
    panel = open_panel(explorer, 1)  # act1: conv1, 3×3 filters reading RGB
    assert "64 of 72 filters 3×3, in colour (RGB), numbered" in panel.note.value
    top, left = panel.grid.origin(0)
    assert (panel.picture[0, 0] == montage.TINT).all()  # padding: never white like a filter pixel
    strip = panel.picture[top - montage.LABEL:top, left:left + panel.grid.tile_w]
    assert (strip.max(axis=2) < 80).any()  # its number, dark on the padding


def test_clicks_outside_the_tiles_or_at_no_number_are_ignored(explorer):
    panel = open_panel(explorer, 0)
    for x, y in [(float("nan"), 5.0), (5.0, float("inf")), (-3.0, 4.0), (1e9, 1e9), (0.5, 0.5)]:
        panel._on_click(x, y)  # was: ValueError from int(nan) raised into the notebook
        assert panel.tile_at(x, y) is None
    panel.canvas._handle_custom_msg({"event": "mouse_down", "x": float("nan"), "y": float("nan")}, [])
    explorer.wait(30)
    assert explorer.method == "gradcam" and explorer.error == ""
