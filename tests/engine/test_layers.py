"""Layer discovery: the candidate layers of common CNNs, checked against independent hooks."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from nbexplain.engine.layers import candidate_layers
from tests.models import Boom, FailingNet, ReusedReLUNet, TinyCNN, example_input
from tests.untouched import ModelState

timm = pytest.importorskip("timm")


def build(factory, meta: bool = True) -> nn.Module:
    """The model with zeroed weights; built on the meta device when the constructor allows it
    (no time spent drawing 100M random numbers for VGG's classifier)."""
    if meta:
        with torch.device("meta"):
            model = factory()
        model = model.to_empty(device="cpu")
    else:
        model = factory()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.zero_()
    return model.eval()


def trace_outputs(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, object]]:
    """(name, module, output) of every call, in the order the calls finished (plain hooks)."""
    calls, handles = [], []
    for name, module in model.named_modules():
        handles.append(module.register_forward_hook(
            lambda m, i, o, name=name: calls.append((name, m, o))))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls


POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Identity, nn.Dropout)


def assert_sensible(model: nn.Module, x: torch.Tensor, layers: list[str]) -> None:
    """Non-empty, no duplicates, ordered by depth, each one 4-D spatial tensor, and the last is
    the last spatial map: whatever finishes after it with a spatial output is a pool, an
    identity, or a container returning that very tensor."""
    assert layers, "no candidate layers"
    assert len(set(layers)) == len(layers), f"duplicates in {layers}"
    calls = trace_outputs(model, x)
    finished = [name for name, _, _ in calls]
    assert all(finished.count(name) == 1 for name in layers), "a candidate is called more than once"
    positions = [finished.index(name) for name in layers]
    assert positions == sorted(positions), f"not ordered by depth: {layers}"
    outputs = {name: out for name, _, out in calls}
    for name in layers:
        out = outputs[name]
        assert isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[2] * out.shape[3] > 1, name
    assert len({id(outputs[name]) for name in layers}) == len(layers), "two candidates share one tensor"
    allowed = {id(outputs[layers[-1]])}
    for name, module, out in calls[positions[-1] + 1:]:
        if isinstance(module, POOLS):
            allowed.add(id(out))
        elif isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[2] * out.shape[3] > 1:
            assert id(out) in allowed, f"{name} comes after {layers[-1]}"


def blocks(model: nn.Module, kind: type) -> list[str]:
    return [name for name, module in model.named_modules() if type(module) is kind]


def hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def check(model: nn.Module, size: int = 64, state: bool = False) -> list[str]:
    """The candidates of ``model``, checked for sense; the model is left as found (fully
    compared with ``state``, else its hooks and modes)."""
    x = torch.zeros(1, 3, size, size)
    before = ModelState.take(model) if state else None
    modes = [m.training for m in model.modules()]
    layers = candidate_layers(model, x)
    if before is not None:
        before.assert_same(model)
    assert hooks(model) == 0 and [m.training for m in model.modules()] == modes
    assert_sensible(model, x, layers)
    return layers


# -- torchvision ------------------------------------------------------------------------------
def test_resnet18_has_the_stem_and_its_eight_residual_blocks():
    model = build(lambda: tvm.resnet18(num_classes=10))
    layers = check(model, state=True)
    assert layers == ["relu", *blocks(model, tvm.resnet.BasicBlock)]
    assert layers[1:] == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]


def test_resnet50_bottlenecks():
    model = build(lambda: tvm.resnet50(num_classes=10))
    layers = check(model)
    assert layers == ["relu", *blocks(model, tvm.resnet.Bottleneck)]
    assert len(layers) == 1 + 3 + 4 + 6 + 3 and layers[-1] == "layer4.2"


def test_vgg_gives_the_relu_after_each_conv():
    model = build(lambda: tvm.vgg11(num_classes=10))
    layers = check(model)
    relus = [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.ReLU)]
    assert layers == relus and len(layers) == 8 and layers[-1] == "features.19"


def test_vgg_bn_skips_conv_and_batchnorm_before_each_relu():
    model = build(lambda: tvm.vgg11_bn(num_classes=10))
    layers = check(model)
    assert layers == [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.ReLU)]


def test_densenet_dense_blocks_and_transitions():
    model = build(lambda: tvm.densenet121(num_classes=10))
    layers = check(model)
    assert layers == [
        "features.relu0",
        "features.denseblock1", "features.transition1",
        "features.denseblock2", "features.transition2",
        "features.denseblock3", "features.transition3",
        "features.denseblock4", "features.norm5",
    ]


def test_mobilenet_v2_inverted_residuals_between_stem_and_head():
    model = build(lambda: tvm.mobilenet_v2(num_classes=10))
    layers = check(model)
    inverted = blocks(model, tvm.mobilenetv2.InvertedResidual)
    assert len(inverted) == 17
    assert layers == ["features.0", *inverted, "features.18"]


def test_mobilenet_v3_small():
    model = build(lambda: tvm.mobilenet_v3_small(num_classes=10))
    layers = check(model)
    inverted = blocks(model, tvm.mobilenetv3.InvertedResidual)
    assert len(inverted) == 11
    assert layers == ["features.0", *inverted, "features.12"]


def test_efficientnet_b0_mbconv_blocks():
    model = build(lambda: tvm.efficientnet_b0(num_classes=10))
    layers = check(model)
    mbconv = blocks(model, tvm.efficientnet.MBConv)
    assert len(mbconv) == 16
    assert layers == ["features.0", *mbconv, "features.8"]


def test_convnext_blocks_and_downsamplers():
    model = build(lambda: tvm.convnext_tiny(num_classes=10))
    layers = check(model)
    cnblocks = blocks(model, tvm.convnext.CNBlock)
    assert len(cnblocks) == 3 + 3 + 9 + 3
    others = [name for name in layers if name not in cnblocks]
    assert others == ["features.0", "features.2", "features.4", "features.6"]  # stem, downsamplers
    assert layers[-1] == "features.7.2"


def test_regnet_blocks():
    model = build(lambda: tvm.regnet_y_400mf(num_classes=10), meta=False)
    layers = check(model)
    assert layers == ["stem", *blocks(model, tvm.regnet.ResBottleneckBlock)]
    assert len(layers) == 1 + 16


# -- timm -------------------------------------------------------------------------------------
def test_efficientnet_lite0_blocks_with_post_activation_stem_and_head():
    model = build(lambda: timm.create_model("tf_efficientnet_lite0", num_classes=10))
    layers = check(model, state=True)
    stages = [1, 2, 2, 3, 3, 4, 1]
    inverted = [f"blocks.{s}.{b}" for s, count in enumerate(stages) for b in range(count)]
    assert layers == ["bn1", *inverted, "bn2"]


def test_timm_efficientnet_b0():
    model = build(lambda: timm.create_model("efficientnet_b0", num_classes=10))
    layers = check(model)
    assert layers[0] == "bn1" and layers[-1] == "bn2" and len(layers) == 2 + 16


def test_timm_resnet():
    model = build(lambda: timm.create_model("resnet18", num_classes=10))
    layers = check(model)
    assert layers == ["act1", *[f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]]


def test_timm_convnext_opens_its_custom_stages():
    model = build(lambda: timm.create_model("convnext_atto", num_classes=10))
    layers = check(model)
    depths = (2, 2, 6, 2)
    expected = ["stem"]
    for stage, depth in enumerate(depths):
        expected += [f"stages.{stage}.downsample"] if stage else []
        expected += [f"stages.{stage}.blocks.{b}" for b in range(depth)]
    assert layers == expected


def test_timm_regnet_opens_stages_even_with_one_block():
    model = build(lambda: timm.create_model("regnetx_002", num_classes=10))
    layers = check(model)
    depths = (1, 1, 4, 7)
    assert layers == ["stem", *[f"s{s + 1}.b{b + 1}" for s, d in enumerate(depths) for b in range(d)]]


def test_timm_mobilenetv3():
    model = build(lambda: timm.create_model("mobilenetv3_small_050", num_classes=10))
    layers = check(model)
    assert layers[0] == "bn1" and layers[-1] == "blocks.5"
    assert sum(name.count(".") == 2 for name in layers) == 11  # the inverted residuals, blocks.s.b


# -- plain and custom models ------------------------------------------------------------------
def test_plain_sequential_keeps_post_activation_outputs_and_skips_pools():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).eval()
    assert check(model, 16, state=True) == ["1", "5"]


def test_sequential_of_conv_groups_keeps_each_group_whole():
    def group(cin, cout):
        conv = nn.Conv2d(cin, cout, 3, padding=1)
        return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

    model = nn.Sequential(group(3, 8), group(8, 16), group(16, 16), nn.Flatten(), nn.Linear(64, 10)).eval()
    assert check(model, 16, state=True) == ["0", "1", "2"]


def test_custom_cnn_with_functional_activations():
    model = TinyCNN("F.relu").eval()
    assert check(model, 16, state=True) == ["conv1", "conv2", "conv3"]


def test_custom_cnn_with_module_activations():
    model = TinyCNN("nn.ReLU(inplace)").eval()
    assert check(model, 16, state=True) == ["act1", "act2", "act3"]


def test_reused_relu_blocks_in_train_mode_are_left_as_found():
    model = ReusedReLUNet()
    assert model.training
    assert check(model, 16, state=True) == ["stem", "layer1.0", "layer1.1"]
    assert model.training


def test_no_spatial_layer_gives_an_empty_list():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    assert candidate_layers(model, torch.zeros(1, 3, 4, 4)) == []


def test_hooks_are_removed_when_the_forward_raises():
    model = FailingNet(TinyCNN())
    model.fail = "forward"
    state = ModelState.take(model)
    with pytest.raises(Boom):
        candidate_layers(model, example_input())
    state.assert_same(model)


def test_explainer_default_layer_is_the_last_candidate():
    import nbexplain as nbx

    model = build(lambda: tvm.resnet18(num_classes=10))
    explainer = nbx.Explainer(model, input_size=(3, 64, 64))
    assert explainer.layers()[-1] == explainer.default_layer() == "layer4.1"


def test_stages_held_in_a_module_list():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stages = nn.ModuleList([
                nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()),
                nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()),
            ])
            self.extra = nn.ModuleList([nn.Conv2d(4, 4, 1)])
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            for stage in self.stages:
                x = stage(x)
            return self.fc(self.extra[0](x).mean((2, 3)))

    assert check(Net().eval(), 8, state=True) == ["stages.0", "stages.1", "extra.0"]


# -- models inside models -----------------------------------------------------------------------
class Normalize(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class Wrapper(nn.Module):
    """A model whose forward calls an inner model (a fine-tuning wrapper, a Lightning module)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.net = inner

    def forward(self, x):
        return self.net(x).log_softmax(1)


def test_a_normalize_before_the_model_is_skipped_and_the_model_opened():
    model = nn.Sequential(Normalize(), build(lambda: tvm.resnet18(num_classes=10))).eval()
    layers = check(model, state=True)
    assert layers == ["1.relu", *blocks(model, tvm.resnet.BasicBlock)]
    assert layers[1:] == [f"1.layer{i}.{j}" for i in range(1, 5) for j in range(2)]


def test_a_wrapper_whose_forward_calls_the_model_lists_the_inner_layers():
    inner = build(lambda: tvm.resnet18(num_classes=10))
    plain = check(inner)
    assert check(Wrapper(inner).eval()) == [f"net.{name}" for name in plain]
    assert check(Wrapper(nn.Sequential(Normalize(), inner)).eval()) == [f"net.1.{name}" for name in plain]


def test_a_block_that_keeps_its_map_is_not_opened():
    """Opening is only for modules that return no feature map: a residual block stays whole."""
    model = build(lambda: tvm.resnet18(num_classes=10))
    assert "layer1.0.conv1" not in check(Wrapper(model).eval())


def test_layers_follow_the_input_size_after_a_tiny_image():
    import nbexplain as nbx

    model = build(lambda: tvm.resnet18(num_classes=10))
    explainer = nbx.Explainer(model)
    explainer.predict(torch.zeros(3, 1, 1))
    assert explainer.layers() == []  # a 1×1 image has no spatial layer
    explainer.predict(torch.zeros(3, 64, 64))
    assert explainer.layers()[-1] == "layer4.1"
    explainer.predict(torch.zeros(3, 1, 1))
    explainer.predict(torch.zeros(3, 64, 64))
    assert explainer.layers()[-1] == "layer4.1"


def test_the_explainer_never_moves_the_model():
    import nbexplain as nbx

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ValueError, match=r"device='meta', but the model's weights are on 'cpu'.*model.to"):
        nbx.Explainer(model, device="meta")
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert nbx.Explainer(model, device="cpu").device == torch.device("cpu")
    assert nbx.Explainer(nn.ReLU(), device="meta").device == torch.device("meta")  # no weights to move
    with pytest.raises(ValueError, match=r"device must be a torch device, e\.g\."):
        nbx.Explainer(model, device="gpu please")
