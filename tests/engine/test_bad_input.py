"""Wrong inputs raise a ValueError (bad value) or TypeError (bad type) that names the argument
and, where there is a list, says what is valid. Odd model outputs are handled via ``output=``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import nbexplain as nbx
from tests.models import TinyCNN, TinyMLP, Wrapped, example_input

CLASSES = 10


@pytest.fixture(scope="module")
def model():
    return TinyCNN("nn.ReLU").eval()


@pytest.fixture(scope="module")
def explainer(model):
    return nbx.Explainer(model)


@pytest.fixture(scope="module")
def x():
    return example_input()


def raises(error, *needles):
    """``pytest.raises`` whose message must contain every one of ``needles``."""
    class Check:
        def __enter__(self):
            self.ctx = pytest.raises(error)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.ctx.__exit__(*exc)
            message = str(self.info.value)
            for needle in needles:
                assert needle in message, f"{needle!r} not in error message {message!r}"
            return handled

    return Check()


# -- the input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(16, 16), (2, 3, 16, 16), (1, 1, 3, 16, 16), (3,)])
def test_wrong_tensor_shape(explainer, shape):
    with raises(ValueError, "x must have shape (C,H,W) or (1,C,H,W)", str(shape)):
        explainer.explain(torch.zeros(shape), "gradient")


def test_wrong_channel_count_names_x_and_the_first_conv(explainer):
    with raises(ValueError, "x has 4 channels", "'conv1' expects 3"):
        explainer.explain(torch.zeros(1, 4, 16, 16), "gradient")


def test_wrong_size_for_a_linear_model():
    with raises(ValueError, "x has shape (3, 8, 8)", "48 input features"):
        nbx.Explainer(TinyMLP()).explain(torch.zeros(1, 3, 8, 8), "saliency")


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool, torch.complex64])
def test_non_float_tensor(explainer, dtype):
    with raises(TypeError, "x must be a floating-point tensor", str(dtype)):
        explainer.explain(torch.zeros(1, 3, 16, 16, dtype=dtype), "gradient")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_are_cast_to_the_models(explainer, x, dtype):
    result = explainer.explain(x.to(dtype), "gradient", target=1)
    reference = explainer.explain(x.to(dtype).float(), "gradient", target=1)
    torch.testing.assert_close(result.attribution, reference.attribution)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_tensor(explainer, value):
    x = torch.zeros(1, 3, 16, 16)
    x[0, 1, 2, 3] = value
    with raises(ValueError, "x contains NaN or infinite values"):
        explainer.explain(x, "gradient")


@pytest.mark.parametrize("bad", [[1, 2, 3], "cat.png", None, 3.0])
def test_not_an_image(explainer, bad):
    with raises(TypeError, "x must be a PIL image, an HxWxC numpy array, or a tensor", type(bad).__name__):
        explainer.explain(bad, "gradient")


@pytest.mark.parametrize("image", [Image.new("RGB", (16, 16)), np.zeros((16, 16, 3), np.uint8)])
def test_image_without_preprocess(explainer, image):
    with raises(ValueError, "needs preprocess="):
        explainer.explain(image, "gradient")


def test_numpy_images_are_checked():
    explainer = nbx.Explainer(TinyCNN().eval(), preprocess=lambda image: torch.zeros(3, 16, 16))
    with raises(ValueError, "float numpy image must have values in [0, 1]"):
        explainer.explain(np.full((16, 16, 3), 2.0), "gradient")
    with raises(ValueError, "x contains NaN"):
        explainer.explain(np.full((16, 16, 3), np.nan), "gradient")
    with raises(ValueError, "HxW or HxWxC", "(3, 16, 16)"):
        explainer.explain(np.zeros((3, 16, 16)), "gradient")
    with raises(TypeError, "uint8 or float", "int64"):
        explainer.explain(np.zeros((16, 16, 3), np.int64), "gradient")


def test_preprocess_must_return_a_tensor():
    explainer = nbx.Explainer(TinyCNN().eval(), preprocess=lambda image: np.zeros((3, 16, 16)))
    with raises(TypeError, "preprocess must return a torch.Tensor", "ndarray"):
        explainer.explain(Image.new("RGB", (16, 16)), "gradient")


def test_input_tensor_requiring_grad_is_fine(explainer, x):
    leaf = x.clone().requires_grad_(True)
    result = explainer.explain(leaf, "gradient", target=2)
    assert leaf.grad is None
    torch.testing.assert_close(result.attribution, explainer.explain(x, "gradient", target=2).attribution)


# -- method, layer, target -----------------------------------------------------------------------

def test_unknown_method(explainer, x):
    with raises(ValueError, "unknown method 'gradcam2'", "valid:", "'gradient'"):
        explainer.explain(x, "gradcam2")
    with raises(TypeError, "method must be a str", "int"):
        explainer.explain(x, 3)
    with raises(ValueError, "unknown method 'nope'"):
        nbx.method_info("nope")


def test_layer_errors(explainer, x):
    with raises(ValueError, "'gradient' works on the input pixels and takes no layer", "layer='conv1'"):
        explainer.explain(x, "gradient", layer="conv1")
    layer_method = next(name for name in nbx.methods() if nbx.method_info(name).needs_layer)
    with raises(ValueError, "layer 'conv9' is not a module", "'conv1'"):
        explainer.explain(x, layer_method, layer="conv9")
    with raises(TypeError, "layer must be a str", "int"):
        explainer.explain(x, layer_method, layer=3)


@pytest.mark.parametrize("method", ["gradient", "smoothgrad", "integrated_gradients", "guided_backprop"])
@pytest.mark.parametrize("target", [CLASSES, 10**6])
def test_target_out_of_range(explainer, x, method, target):
    with raises(ValueError, f"target={target} is out of range", f"0..{CLASSES - 1}"):
        explainer.explain(x, method, target=target)


@pytest.mark.parametrize(
    ("target", "error", "needles"),
    [
        (-1, ValueError, ["target=-1 is out of range"]),
        (2.0, TypeError, ["target must be None, a class index (int) or a label (str)", "float"]),
        (True, TypeError, ["target must be", "bool"]),
        (torch.tensor([1, 2]), ValueError, ["target must be one class", "(2,)"]),
        ("cat", ValueError, ["target='cat' is a label, but the Explainer has no labels"]),
    ],
)
def test_bad_target(explainer, x, target, error, needles):
    with raises(error, *needles):
        explainer.explain(x, "gradient", target=target)


def test_targets_as_labels_tensors_and_numpy_ints(model, x):
    labels = [f"class{i}" for i in range(CLASSES)]
    explainer = nbx.Explainer(model, labels=labels)
    with raises(ValueError, "target='cat' is not a known label"):
        explainer.explain(x, "gradient", target="cat")
    with raises(ValueError, "target='clas3' is not a known label", "did you mean", "class3"):
        explainer.explain(x, "gradient", target="clas3")
    expected = explainer.explain(x, "gradient", target=3).attribution
    for same in ("class3", "CLASS3", torch.tensor(3), np.int64(3)):
        assert torch.equal(explainer.explain(x, "gradient", target=same).attribution, expected)


# -- parameters ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("method", "params", "error", "needles"),
    [
        ("smoothgrad", {"sample": 3}, ValueError, ["unknown parameter(s) ['sample']", "'samples'"]),
        ("gradient", {"steps": 3}, ValueError, ["method 'gradient' got unknown parameter(s) ['steps']"]),
        ("smoothgrad", {"samples": "3"}, TypeError, ["parameter 'samples' expects int, got str"]),
        ("smoothgrad", {"samples": 3.5}, TypeError, ["parameter 'samples' expects int, got float"]),
        ("smoothgrad", {"samples": True}, TypeError, ["parameter 'samples' expects int, got bool"]),
        ("smoothgrad", {"samples": 0}, ValueError, ["parameter 'samples' must be in [1, 1024], got 0"]),
        ("smoothgrad", {"noise": -1}, ValueError, ["parameter 'noise' must be in [0.0, 10.0]"]),
        ("smoothgrad", {"noise": float("nan")}, ValueError, ["parameter 'noise' must be a finite number"]),
        ("smoothgrad", {"noise": float("inf")}, ValueError, ["parameter 'noise' must be a finite number"]),
        ("smoothgrad", {"magnitude": 1}, TypeError, ["parameter 'magnitude' expects bool, got int"]),
        ("smoothgrad", {"seed": -1}, ValueError, ["parameter 'seed' must be >= 0, got -1"]),
        ("integrated_gradients", {"steps": 0}, ValueError, ["parameter 'steps' must be in [1, 1024]"]),
        ("integrated_gradients", {"rule": "simpson"}, ValueError,
         ["parameter 'rule' must be one of", "'simpson'"]),
        ("integrated_gradients", {"baseline": "ones"}, ValueError, ["parameter 'baseline' must be one of"]),
        ("integrated_gradients", {"baseline": 0.0}, TypeError,
         ["parameter 'baseline' expects str or Tensor"]),
        ("integrated_gradients", {"baseline": torch.zeros(3, 8, 8)}, ValueError,
         ["parameter 'baseline' tensor must have the input's shape (3, 16, 16); got (3, 8, 8)"]),
        ("integrated_gradients", {"baseline": torch.full((3, 16, 16), float("nan"))}, ValueError,
         ["parameter 'baseline' contains NaN"]),
        ("integrated_gradients", {"baseline": torch.zeros(3, 16, 16, dtype=torch.complex64)}, TypeError,
         ["parameter 'baseline' must be a real tensor"]),
        ("integrated_gradients", {"rule": "riemann_trapezoid", "steps": 1}, ValueError,
         ["rule 'riemann_trapezoid' needs steps >= 2"]),
    ],
)
def test_bad_parameters(explainer, x, method, params, error, needles):
    with raises(error, *needles):
        explainer.explain(x, method, **params)


def test_numpy_scalars_are_accepted_as_parameters(explainer, x):
    a = explainer.explain(x, "smoothgrad", samples=np.int64(3), noise=np.float32(0.25), target=1)
    b = explainer.explain(x, "smoothgrad", samples=3, noise=0.25, target=1)
    torch.testing.assert_close(a.attribution, b.attribution)


def test_callbacks_must_be_callable(explainer, x):
    with raises(TypeError, "progress must be a callable"):
        explainer.explain(x, "gradient", progress=3)
    with raises(TypeError, "should_stop must be a callable", "int"):
        explainer.explain(x, "gradient", should_stop=3)


def test_constructor_arguments(model):
    with raises(TypeError, "model must be a torch.nn.Module", "function"):
        nbx.Explainer(lambda x: x)
    with raises(TypeError, "preprocess must be callable", "int"):
        nbx.Explainer(model, preprocess=3)
    with raises(TypeError, "labels must be a sequence of class names or a dict", "int"):
        nbx.Explainer(model, labels=3)
    with raises(TypeError, "output must be None, a key/attribute name (str), an index (int) or a callable"):
        nbx.Explainer(model, output=1.5)


# -- model outputs -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kind", "output"),
    [("dict", None), ("hf", None), ("ordered", None),  # .logits / ["logits"] found on their own
     ("tuple", 0), ("list", 1), ("list", -1), ("dict-nologits", "scores"), ("hf", "logits"),
     ("tuple", lambda out: out[0])],
)
@pytest.mark.parametrize("method", ["gradient", "integrated_gradients", "guided_backprop"])
def test_tuple_dict_and_hf_outputs(model, x, kind, output, method):
    expected = nbx.Explainer(model).explain(x, method, target=4)
    got = nbx.Explainer(Wrapped(model, kind), output=output).explain(x, method, target=4)
    torch.testing.assert_close(got.attribution, expected.attribution)
    assert got.score == pytest.approx(expected.score)
    top = nbx.Explainer(Wrapped(model, kind), output=output).explain(x, method)
    assert top.target == int(model(x)[0].argmax())


@pytest.mark.parametrize(
    ("kind", "output", "error", "needles"),
    [
        ("tuple", None, ValueError, ["the model returns tuple, not a tensor; pass output=", "2 items"]),
        ("dict-nologits", None, ValueError, ["pass output=", "['features', 'scores']"]),
        ("dict-nologits", "logit", ValueError, ["output='logit'", "no such key", "['features', 'scores']"]),
        ("list", 5, ValueError, ["output=5: cannot index the model's output"]),
        ("tuple", lambda out: out, TypeError, ["output: the selected model output is tuple"]),
        ("list", 0, ValueError, ["output= picks a tensor that is not the logits"]),
        ("int", None, ValueError, ["the model returns int"]),
        ("1d", None, ValueError, ["expected logits of shape (N, classes) with N=1; got (1,)"]),
        ("4d", None, ValueError, ["got (1, 10, 1, 1)", "output=lambda out: out.flatten(1)"]),
    ],
)
def test_bad_outputs(model, x, kind, output, error, needles):
    with raises(error, *needles):
        nbx.Explainer(Wrapped(model, kind), output=output).explain(x, "gradient")


def test_reshaping_output_callable(model, x):
    fixed = nbx.Explainer(Wrapped(model, "4d"), output=lambda out: out.flatten(1))
    torch.testing.assert_close(fixed.explain(x, "saliency", target=1).attribution,
                               nbx.Explainer(model).explain(x, "saliency", target=1).attribution)


def test_predict_topk(explainer, x):
    with raises(ValueError, "topk must be a positive int"):
        explainer.predict(x, topk=0)
