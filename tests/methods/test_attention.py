"""Attention, attention rollout and gradient rollout on ViTs: the probabilities captured from
fused kernels equal those an unfused model forms, the model's output is unchanged while they
are captured, rollout and gradient rollout equal straightforward references written from the
papers, models without a class token are refused by name, and the model is left untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nbexplain as nbx
from nbexplain.engine.attention import AttentionCapture
from nbexplain.methods.lrp import UnsupportedModel
from tests.methods.test_transformers import SMALL, seeded, swin, torchvision_vit
from tests.models import TinyCNN
from tests.untouched import ModelState

timm = pytest.importorskip("timm")
from timm.models.vision_transformer import VisionTransformer as TimmViT  # noqa: E402

METHODS = ["attention", "rollout", "grad_rollout"]


@pytest.fixture(scope="module")
def x():
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(7))


def deit(fused: bool = True, registers: int = 0) -> torch.nn.Module:
    model = seeded(TimmViT(**SMALL, reg_tokens=registers))
    for block in model.blocks:
        block.attn.fused_attn = fused
    return model


def unfused_attention(model: torch.nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """timm's explicit attention path: the probabilities are the input of each ``attn_drop``."""
    maps, handles = [], []
    for block in model.blocks:
        handles.append(block.attn.attn_drop.register_forward_hook(lambda m, i, o: maps.append(i[0])))
    try:
        logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return maps, logits


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("kind", ["timm", "torchvision", "huggingface"])
def test_the_output_is_unchanged_while_attention_is_captured(kind, grad, x):
    if kind == "timm":
        model = deit()
    elif kind == "torchvision":
        model = torchvision_vit()
    else:
        from tests.methods.test_huggingface import vit
        model = vit()
    with torch.set_grad_enabled(grad):
        plain = model(x)
        with AttentionCapture(grad=grad) as capture:
            captured = model(x)
    plain, captured = (getattr(out, "logits", out) for out in (plain, captured))
    if kind == "torchvision" and not grad:
        # nn.MultiheadAttention takes its native fast path only when no function mode is active;
        # under the capture it runs its standard path (the same math, rounded differently)
        torch.testing.assert_close(captured, plain, rtol=1e-5, atol=1e-5)
    else:
        assert torch.equal(plain, captured)  # bit for bit: the model's own op answers
    assert len(capture.maps) == 3 and capture.maps[0].shape == (1, 2, 17, 17)


def test_probabilities_from_the_fused_kernel_equal_the_unfused_models(x):
    reference, _ = unfused_attention(deit(fused=False), x)
    with torch.no_grad(), AttentionCapture() as capture:
        deit(fused=True)(x)
    assert len(capture.maps) == len(reference) == 3
    for ours, theirs in zip(capture.maps, reference, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def rollout_reference(maps: list[np.ndarray], prefix: int) -> np.ndarray:
    """Abnar & Zuidema 2020, written out: Â = ½(mean_heads A + I) row-normalized, rolled out."""
    rolled = np.eye(maps[0].shape[-1])
    for a in maps:
        mixed = 0.5 * (a[0].mean(0) + np.eye(a.shape[-1]))
        mixed = mixed / mixed.sum(-1, keepdims=True)
        rolled = mixed @ rolled
    return rolled[0, prefix:]


@pytest.mark.parametrize("registers", [0, 4])
def test_rollout_and_attention_equal_references(x, registers):
    model = deit(registers=registers)
    prefix = 1 + registers
    with torch.no_grad():
        maps, _ = unfused_attention(deit(fused=False, registers=registers), x)
    maps = [m.double().numpy() for m in maps]
    explainer = nbx.Explainer(model)
    rolled = explainer.explain(x, "rollout").attribution.double().numpy()
    np.testing.assert_allclose(rolled.ravel(), rollout_reference(maps, prefix), rtol=1e-5, atol=1e-7)
    head = explainer.explain(x, "attention", block=1, head=1).attribution.double().numpy()
    np.testing.assert_allclose(head.ravel(), maps[1][0, 1, 0, prefix:], rtol=1e-5, atol=1e-7)
    mean = explainer.explain(x, "attention").attribution.double().numpy()
    np.testing.assert_allclose(mean.ravel(), maps[-1][0].mean(0)[0, prefix:], rtol=1e-5, atol=1e-7)


def test_gradient_rollout_equals_a_reference(x):
    """Chefer et al. 2021, written out on the unfused model's own attention tensors and gradients."""
    unfused = deit(fused=False)
    maps, logits = unfused_attention(unfused, x)
    gradients = torch.autograd.grad(logits[0, 3], maps)
    rolled = np.eye(maps[0].shape[-1])
    for a, g in zip(maps, gradients, strict=True):
        weighted = np.maximum(g[0].double().numpy() * a[0].detach().double().numpy(), 0).mean(0)
        rolled = rolled + weighted @ rolled
    ours = nbx.Explainer(deit()).explain(x, "grad_rollout", target=3).attribution.double().numpy()
    np.testing.assert_allclose(ours.ravel(), rolled[0, 1:], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_models_without_a_class_token_are_refused_by_name(method, x):
    for model in (TinyCNN("nn.ReLU").eval(), swin()):
        state = ModelState.take(model)
        with pytest.raises(UnsupportedModel, match=type(model).__name__):
            nbx.Explainer(model).explain(x, method)
        state.assert_same(model)


@pytest.mark.parametrize("method", METHODS)
def test_the_model_is_left_untouched_also_after_an_error(method, x):
    model = deit()
    model.blocks[0].attn.qkv.weight.requires_grad_(False)
    state = ModelState.take(model)
    result = nbx.Explainer(model).explain(x, method)
    state.assert_same(model)
    assert torch.isfinite(result.attribution).all() and result.map.shape == (64, 64)

    class Boom(Exception):
        pass

    def fail(*args):
        raise Boom

    handle = model.blocks[2].register_forward_hook(fail)
    try:
        with pytest.raises(Boom):
            nbx.Explainer(model).explain(x, method)
    finally:
        handle.remove()
    state.assert_same(model)
    assert not torch.overrides._get_current_function_mode_stack()  # the capture mode is gone
