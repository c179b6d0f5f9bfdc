"""The units methods (activations, filters) and the montage helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbexplain as nbx
from nbexplain import montage, render
from nbexplain.engine.hooks import find_module
from tests.models import ReusedReLUNet, TinyCNN, example_input
from tests.untouched import ModelState


@pytest.fixture
def tiny():
    return TinyCNN("nn.ReLU").eval()


@pytest.fixture
def x():
    return example_input()


def hooked_output(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The layer's output from a plain forward hook (an independent capture)."""
    store = {}
    module = find_module(model, layer)
    handle = module.register_forward_hook(lambda m, i, o: store.update(out=o.detach().clone()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return store["out"][0]


# -- activations ------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", ["conv1", "act1", "conv2", "act3"])
def test_activations_equal_a_hook_capture(tiny, x, layer):
    explanation = nbx.Explainer(tiny).explain(x, "activations", layer=layer)
    expected = hooked_output(tiny, layer, x)
    assert explanation.attribution.shape == expected.shape
    torch.testing.assert_close(explanation.attribution, expected)
    assert explanation.layer == layer and explanation.method == "activations"


def test_activations_before_an_inplace_relu_are_kept_as_they_were(x):
    model = ReusedReLUNet().eval()
    explanation = nbx.Explainer(model).explain(x, "activations", layer="stem.1")  # BN, then ReLU(inplace)
    torch.testing.assert_close(explanation.attribution, hooked_output(model, "stem.1", x))
    assert (explanation.attribution < 0).any()


def test_activations_target_and_score_come_from_the_same_forward(tiny, x):
    explanation = nbx.Explainer(tiny).explain(x, "activations", layer="act2", target=3)
    with torch.no_grad():
        logits = tiny(x)[0]
    assert explanation.target == 3 and explanation.score == pytest.approx(float(logits[3]))


def test_activations_run_without_autograd(tiny, x):
    seen = []
    handle = tiny.conv1.register_forward_hook(lambda m, i, o: seen.append(torch.is_grad_enabled()))
    try:
        explanation = nbx.Explainer(tiny).explain(x, "activations", layer="act2")
    finally:
        handle.remove()
    assert seen == [False]  # one forward, which also gives the target and score
    assert not explanation.attribution.requires_grad


def upsampled(values: torch.Tensor) -> np.ndarray:
    big = F.interpolate(values[None, None], size=(16, 16), mode="bilinear", align_corners=False)[0, 0]
    return render.normalize_minmax(big)


def test_activations_map_is_the_channel_mean_by_default(tiny, x):
    explanation = nbx.Explainer(tiny).explain(x, "activations", layer="act2")
    maps = hooked_output(tiny, "act2", x)
    np.testing.assert_allclose(explanation.map, upsampled(maps.mean(0)), atol=1e-6)
    assert explanation.map.shape == (16, 16) and explanation.map.min() == 0 and explanation.map.max() == 1


def test_activations_channel_param_picks_one_map(tiny, x):
    explanation = nbx.Explainer(tiny).explain(x, "activations", layer="act3", channel=5)
    maps = hooked_output(tiny, "act3", x)
    assert explanation.attribution.shape == maps.shape  # every channel is kept
    np.testing.assert_allclose(explanation.map, upsampled(maps[5]), atol=1e-6)
    assert explanation.params == {"channel": 5}


def test_activations_channel_out_of_range_names_the_parameter_and_range(tiny, x):
    explainer = nbx.Explainer(tiny)
    with pytest.raises(ValueError, match=r"'channel'.*\[0, 11\].*'act2'.*12 channels; got 12"):
        explainer.explain(x, "activations", layer="act2", channel=12)
    with pytest.raises(ValueError, match="'channel'"):
        explainer.explain(x, "activations", layer="act2", channel=-2)
    with pytest.raises(TypeError, match="'channel'"):
        explainer.explain(x, "activations", layer="act2", channel=1.5)


def test_activations_of_a_non_spatial_layer_is_a_clear_error(tiny, x):
    with pytest.raises(ValueError, match=r"'fc'.*spatial"):
        nbx.Explainer(tiny).explain(x, "activations", layer="fc")


def test_activations_at_every_layer_from_one_forward(tiny, x):
    explainer = nbx.Explainer(tiny)
    calls = []
    handle = tiny.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        results = explainer.explain_layers(x, "activations", layers=["act1", "act2", "act3"])
    finally:
        handle.remove()
    assert len(calls) == 1
    assert list(results) == ["act1", "act2", "act3"]
    for layer, explanation in results.items():
        single = explainer.explain(x, "activations", layer=layer)
        torch.testing.assert_close(explanation.attribution, single.attribution)
        np.testing.assert_array_equal(explanation.map, single.map)


def test_activations_layerwise_checks_the_channel_for_every_layer(tiny, x):
    with pytest.raises(ValueError, match="'act1', which has 8 channels"):
        nbx.Explainer(tiny).explain_layers(x, "activations", layers=["act3", "act1"], channel=10)


def test_units_methods_leave_the_model_as_found(x):
    model = ReusedReLUNet()
    state = ModelState.take(model)
    explainer = nbx.Explainer(model)
    explainer.explain(x, "activations", layer="layer1.1")
    explainer.explain_layers(x, "activations")
    explainer.explain(x, "filters", layer="layer1.0")
    state.assert_same(model)


# -- filters ----------------------------------------------------------------------------------
def test_filters_are_a_copy_of_the_conv_weight(tiny, x):
    explanation = nbx.Explainer(tiny).explain(x, "filters", layer="conv2")
    assert torch.equal(explanation.attribution, tiny.conv2.weight.detach())
    explanation.attribution.zero_()
    assert tiny.conv2.weight.abs().sum() > 0
    assert explanation.layer == "conv2" and explanation.map.shape == (16, 16)
    assert explanation.map.min() >= 0 and explanation.map.max() <= 1


def test_filters_target_and_score(tiny, x):
    explanation = nbx.Explainer(tiny).explain(x, "filters", layer="conv1")
    with torch.no_grad():
        logits = tiny(x)[0]
    assert explanation.target == int(logits.argmax())
    assert explanation.score == pytest.approx(float(logits.max()))


def test_filters_of_a_block_are_its_first_conv_and_the_explanation_says_so(x):
    model = ReusedReLUNet().eval()
    explanation = nbx.Explainer(model).explain(x, "filters", layer="layer1.1")
    assert explanation.layer == "layer1.1.conv1"
    assert torch.equal(explanation.attribution, model.layer1[1].conv1.weight.detach())


def test_filters_of_an_activation_are_the_conv_before_it(tiny, x):
    explanation = nbx.Explainer(tiny).explain(x, "filters", layer="act2")
    assert explanation.layer == "conv2"
    assert torch.equal(explanation.attribution, tiny.conv2.weight.detach())


def test_filters_default_layer_on_a_resnet(x):
    import torchvision

    model = torchvision.models.resnet18(num_classes=10).eval()
    explanation = nbx.Explainer(model).explain(torch.zeros(1, 3, 64, 64), "filters")
    assert explanation.layer == "layer4.1.conv1" and explanation.attribution.shape == (512, 512, 3, 3)


def test_filters_without_a_conv_before_the_layer_list_the_conv_layers():
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))
    with pytest.raises(ValueError, match=r"layer '0' \(BatchNorm2d\) runs no Conv2d.*\['1'\]"):
        nbx.Explainer(model.eval()).explain(torch.zeros(1, 3, 8, 8), "filters", layer="0")


def test_filters_input_channel(tiny, x):
    explainer = nbx.Explainer(tiny)
    explanation = explainer.explain(x, "filters", layer="conv2", input_channel=7)
    gray = montage.filter_montage(tiny.conv2.weight, input_channel=7).mean(2) / 255
    expected = montage.fit(gray.astype(np.float32), (16, 16), background=1.0)
    np.testing.assert_allclose(explanation.map, expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"'input_channel'.*\[0, 7\].*'conv2'.*8 channels; got 8"):
        explainer.explain(x, "filters", layer="conv2", input_channel=8)


def test_registry_declares_the_units_family():
    for name in ("activations", "filters"):
        info = nbx.method_info(name)
        assert info.family == "units" and info.space == "layer" and info.needs_layer and info.to_map
    assert nbx.method_info("activations").layerwise is not None
    assert nbx.method_info("activations").param("channel").default == -1


# -- montage ----------------------------------------------------------------------------------
def test_filter_montage_of_rgb_filters():
    weight = torch.randn(5, 3, 3, 2, generator=torch.Generator().manual_seed(0))
    picture = montage.filter_montage(weight)
    assert picture.dtype == np.uint8 and picture.shape == (1 + 2 * 4, 1 + 3 * 3, 3)  # 2 rows, 3 columns
    for index in range(5):
        top, left = 1 + (index // 3) * 4, 1 + (index % 3) * 3
        tile = picture[top:top + 3, left:left + 2].astype(np.float32)
        filt = weight[index].permute(1, 2, 0).numpy()
        expected = (filt - filt.min()) / (filt.max() - filt.min()) * 255
        np.testing.assert_allclose(tile, expected, atol=0.51)
    assert (picture[0] == montage.TINT).all() and (picture[:, 0] == montage.TINT).all()  # the background
    assert (picture[5:8, 7:9] == montage.TINT).all()  # the empty sixth cell


def test_filter_montage_of_deeper_filters_is_gray():
    weight = torch.randn(4, 6, 2, 2, generator=torch.Generator().manual_seed(1))
    mean = montage.filter_montage(weight, pad=0)
    assert mean.shape == (4, 4, 3)
    assert (mean[..., 0] == mean[..., 1]).all() and (mean[..., 1] == mean[..., 2]).all()
    first = weight[0].mean(0).numpy()
    np.testing.assert_allclose(mean[:2, :2, 0], (first - first.min()) / np.ptp(first) * 255, atol=0.51)
    second = montage.filter_montage(weight, pad=0, input_channel=2)
    chan = weight[0, 2].numpy()
    np.testing.assert_allclose(second[:2, :2, 0], (chan - chan.min()) / np.ptp(chan) * 255, atol=0.51)


def test_filter_montage_options():
    weight = np.arange(2 * 1 * 2 * 2, dtype=np.float32).reshape(2, 1, 2, 2)
    picture = montage.filter_montage(weight, scale=3, columns=1, pad=2, background=0)
    assert picture.shape == (2 + 2 * (6 + 2), 2 + 6 + 2, 3)
    assert (picture[2:5, 2:5] == 0).all() and (picture[5:8, 5:8] == 255).all()  # each filter 0..255
    shared = montage.filter_montage(weight, normalize="all", pad=0, columns=2)
    assert shared[0, 0, 0] == 0 and shared[1, 3, 0] == 255 and shared[1, 1, 0] == round(3 / 7 * 255)
    constant = montage.filter_montage(np.ones((1, 3, 2, 2)), pad=0)
    assert (constant == 128).all()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"weight": np.zeros((2, 3, 3))}, "conv weight"),
    ({"weight": np.zeros((2, 3, 3, 3)), "normalize": "each"}, "normalize"),
    ({"weight": np.zeros((2, 4, 3, 3)), "input_channel": 4}, r"input_channel must be in \[0, 3\]"),
    ({"weight": np.zeros((2, 3, 3, 3)), "scale": 0}, "scale"),
    ({"weight": np.zeros((2, 3, 3, 3)), "columns": 0}, "columns"),
    ({"weight": np.zeros((2, 3, 3, 3)), "pad": -1}, "pad"),
])
def test_filter_montage_errors(kwargs, match):
    weight = kwargs.pop("weight")
    with pytest.raises(ValueError, match=match):
        montage.filter_montage(weight, **kwargs)


def test_feature_grid():
    maps = torch.rand(6, 4, 5, generator=torch.Generator().manual_seed(2)) * 10
    grid = montage.feature_grid(maps, columns=4)
    assert grid.dtype == np.float32 and grid.shape == (1 + 2 * 5, 1 + 4 * 6)
    assert (grid[0] == 1).all() and grid.min() == 0 and grid.max() == 1
    tile = grid[6:10, 1:6]  # map 4: second row, first column
    np.testing.assert_allclose(tile, render.normalize_minmax(maps[4]), atol=1e-6)
    picked = montage.feature_grid(maps, channels=[5, 0], pad=0, columns=2)
    np.testing.assert_allclose(picked[:, :5], render.normalize_minmax(maps[5]), atol=1e-6)
    shared = montage.feature_grid(maps, normalize="all", pad=0)
    assert shared.shape == (2 * 4, 3 * 5) and shared.max() == 1
    np.testing.assert_allclose(shared[:4, :5], (maps[0] - maps.min()) / (maps.max() - maps.min()), atol=1e-6)
    with pytest.raises(ValueError, match=r"channels must be in \[0, 5\]"):
        montage.feature_grid(maps, channels=[6])
    with pytest.raises(ValueError, match=r"\(K, h, w\)"):
        montage.feature_grid(maps[0])


def test_strongest_channels_first():
    maps = torch.stack([torch.full((2, 2), v) for v in (1.0, 5.0, 3.0, 5.0)])
    assert montage.strongest(maps) == [1, 3, 2, 0]
    assert montage.strongest(maps, 2) == [1, 3]


def test_feature_montage_pads_with_no_colour_of_its_colormap_and_numbers_the_tiles():
    maps = torch.rand(6, 5, 5, generator=torch.Generator().manual_seed(3))
    picture = montage.feature_montage(maps, channels=[5, 0, 2], columns=3, scale=4, cmap="viridis")
    grid = montage.layout(3, 20, 20, columns=3, pad=2, label=montage.LABEL)
    assert picture.shape == (*grid.shape, 3) and picture.dtype == np.uint8
    lut = render.lut("viridis")
    assert (picture[0, 0] == montage.NEUTRAL).all() and not (lut == montage.NEUTRAL).all(axis=1).any()
    assert not (picture[0, 0] == lut[-1]).all() and not (picture[0, 0] == 255).all()  # not yellow, not white
    top, left = grid.origin(1)  # channel 0, second
    expected = render.colorize(render.normalize_minmax(maps[0]), "viridis").repeat(4, 0).repeat(4, 1)
    np.testing.assert_array_equal(picture[top:top + 20, left:left + 20], expected)
    strips = [picture[t - montage.LABEL:t, u:u + 20] for t, u in map(grid.origin, range(3))]
    assert all((strip.max(axis=2) < 80).any() for strip in strips)  # a number on each
    assert not np.array_equal(strips[0], strips[2])  # "5" is not "2"
    small = montage.feature_montage(maps, pad=1)  # 5-pixel tiles: too small for a number
    assert small.shape == (1 + 2 * 6, 1 + 3 * 6, 3)
    with pytest.raises(ValueError, match="labels need tiles at least"):
        montage.feature_montage(maps, labels=True)
    framed = montage.feature_montage(maps, channels=[5, 0, 2], columns=3, scale=4, highlight=0)
    top, left = grid.origin(1)
    assert (framed[top - montage.LABEL - 2, left - 2:left + 22] == montage.HIGHLIGHT).all()
    with pytest.raises(ValueError, match=r"highlight must be one of the channels shown \[5, 0, 2\]"):
        montage.feature_montage(maps, channels=[5, 0, 2], highlight=1)


def test_filter_montage_keeps_white_filter_pixels_apart_and_numbers_large_tiles():
    weight = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(4))
    picture = montage.filter_montage(weight, scale=8, pad=2, columns=4)
    grid = montage.layout(4, 24, 24, columns=4, pad=2, label=montage.LABEL)
    assert picture.shape == (*grid.shape, 3)
    assert (picture[0] == montage.TINT).all() and len(set(montage.TINT)) > 1  # a colour, not a gray
    top, left = grid.origin(3)
    strip = picture[top - montage.LABEL:top, left:left + 24]
    assert (strip.max(axis=2) < 80).any()
    gray = montage.filter_montage(torch.randn(2, 5, 3, 3), scale=2, pad=1)  # 6-pixel tiles: no numbers
    assert gray.shape == (1 + 1 * 7, 1 + 2 * 7, 3)


def test_weight_matrix_of_a_one_by_one_convolution():
    weight = torch.randn(10, 4, 1, 1, generator=torch.Generator().manual_seed(5))
    matrix = montage.weight_matrix(weight)
    assert (matrix.outputs, matrix.inputs, matrix.cell) == (10, 4, 12)
    assert matrix.limit == pytest.approx(float(weight.abs().max()))
    picture, lut = matrix.picture, render.lut("bwr")
    for j, i in [(0, 0), (9, 3), (4, 2)]:  # filter j's weight on input i: column j, row i
        value = float(weight[j, i, 0, 0]) / matrix.limit
        colour = lut[int(np.clip((0.5 + 0.5 * value) * 255 + 0.5, 0, 255))]
        assert ((picture == colour).all(axis=2)).sum() >= 144  # a 12×12 cell of its colour
    big = montage.weight_matrix(torch.randn(1280, 320, 1, 1), width=400, height=320)
    assert big.cell == 1 and big.outputs < 1280 and big.inputs < 320  # one pixel a weight, the rest left out
    assert big.picture.shape[0] <= 320 and big.picture.shape[1] <= 400
    with pytest.raises(ValueError, match=r"1×1 conv weight"):
        montage.weight_matrix(torch.zeros(2, 2, 3, 3))


def test_grid_finds_the_tile_under_a_pixel():
    grid = montage.layout(5, 4, 6, columns=3, pad=2, label=3)
    assert grid.shape == (2 + 2 * (3 + 4 + 2), 2 + 3 * (6 + 2))
    assert grid.origin(4) == (2 + 9 + 3, 2 + 8)
    assert grid.index_at(2, 2) == 0 and grid.index_at(2 + 8 + 5, 2 + 3 + 3) == 1  # a label, a picture
    assert grid.index_at(1, 5) is None and grid.index_at(2 + 6, 5) is None  # padding
    assert grid.index_at(2 + 16 + 1, 2 + 9 + 1) is None  # the empty sixth cell
    for x, y in [(float("nan"), 3), (3, float("inf")), (-5, 3), (None, 3), ("3", 3)]:
        assert grid.index_at(x, y) is None


def test_fit_keeps_the_aspect_and_square_pixels():
    picture = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = montage.fit(picture, (10, 10), background=-1)
    assert out.shape == (10, 10)
    np.testing.assert_array_equal(out[2:8, 0:9], picture.repeat(3, 0).repeat(3, 1))  # factor 3, centred
    assert (out[:2] == -1).all() and (out[:, 9] == -1).all()
    small = montage.fit(np.zeros((40, 20, 3), np.uint8), (10, 10), background=255)
    assert small.shape == (10, 10, 3) and (small[:, :2] == 255).all() and (small[:, 2:7] == 0).all()
