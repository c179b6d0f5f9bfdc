"""The widgets' state: traitlets fields that every way of changing them announces.

For each field of the Explorer and of Compare, ``observe(fn, names=[field])`` hears a change made
from code (an assignment, ``set()``) and one made from its control (the ipywidget's ``value``
set as the browser sets it, a button clicked, a brush stroke arriving as the canvas's message),
exactly once (the control showing the new value echoes nothing). A bad value from code raises
and announces nothing; from a control it is shown in the widget. The mechanism itself
(``state.py``) is checked on a small host with no widgets at all.
"""

from __future__ import annotations

import numpy as np
import pytest
import traitlets as t

import nbexplain as nbx
from nbexplain.widgets.compare import Compare
from nbexplain.widgets.explorer import Explorer
from nbexplain.widgets.state import Field, Reactions, StateHost, proposed, show, start
from tests.models import example_input


@pytest.fixture()
def images():
    return [example_input(seed)[0] for seed in (1, 2)]


@pytest.fixture()
def explorer(ex, images):
    made = Explorer(ex, images, method="smoothgrad", samples=2).wait(30)
    yield made
    made.close()


@pytest.fixture()
def compare(ex, images):
    made = Compare(ex, images[0], methods=["saliency", "integrated_gradients", "gradcam"],
                   params={"integrated_gradients": {"steps": 4}}).wait(30)
    yield made
    made.close()


def heard(owner, name: str) -> list[dict]:
    changes: list[dict] = []
    owner.observe(changes.append, names=[name])
    return changes


def same(a, b) -> bool:
    return np.array_equal(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else a == b


def stroke(canvas) -> None:
    canvas._handle_custom_msg({"type": "stroke", "points": [[2, 2], [12, 12]], "size": 2, "final": True}, [])


def painted(explorer) -> np.ndarray:
    return explorer.canvas.mask  # what the stroke painted there


def square() -> np.ndarray:
    mask = np.zeros((16, 16), np.float32)
    mask[4:12, 4:12] = 1
    return mask


# field: (a value from code, what its control does, the value the control gives)
EXPLORER = {
    "method": ("saliency", lambda e: setattr(e.controls.method, "value", "layercam"), lambda e: "layercam"),
    "layer": ("act1", lambda e: setattr(e.controls.layer, "value", "act2"), lambda e: "act2"),
    "target": (3, lambda e: setattr(e.controls.target.search, "value", "c7"), lambda e: 7),
    "params": ({"samples": 3}, lambda e: setattr(e.controls.param_widgets["samples"], "value", 4),
               lambda e: {**nbx.method_info("smoothgrad").bind({}), "samples": 4}),
    "opacity": (0.3, lambda e: setattr(e.controls.opacity, "value", 0.8), lambda e: 0.8),
    "cmap": ("viridis", lambda e: setattr(e.controls.cmap, "value", "gray"), lambda e: "gray"),
    "mode": ("brush", lambda e: setattr(e.controls.mode, "value", "patch"), lambda e: "patch"),
    "brush_size": (3, lambda e: setattr(e.controls.brush_size, "value", 5), lambda e: 5),
    "baseline": ("zeros", lambda e: setattr(e.controls.baseline, "value", "mean"), lambda e: "mean"),
    "mask": (square(), lambda e: (e.set(mode="brush"), stroke(e.canvas)), painted),  # brush mode paints
    "index": (1, lambda e: e.controls.next.click(), lambda e: 1),
}


@pytest.mark.parametrize("name", list(EXPLORER))
def test_explorer_field_is_heard_from_code_and_from_its_control(explorer, name):
    value, move_control, control_value = EXPLORER[name]
    before = getattr(explorer, name)
    changes = heard(explorer, name)
    setattr(explorer, name, value)
    assert len(changes) == 1, changes  # once: the control showing it echoes nothing
    assert same(changes[0]["old"], before) and same(getattr(explorer, name), changes[0]["new"])
    if name != "params":
        assert same(changes[0]["new"], value)
    explorer.wait(30)
    explorer.set(**{name: before})  # back, through set(): heard again
    assert len(changes) == 2 and same(changes[1]["new"], before)
    move_control(explorer)
    explorer.wait(30)
    expected = control_value(explorer)
    assert len(changes) == 3, changes
    assert same(changes[2]["new"], expected) and same(getattr(explorer, name), expected)
    assert explorer.error == ""


def test_image_is_heard_when_set_and_when_the_navigation_moves(explorer, images):
    changes = heard(explorer, "image")
    replacement = example_input(9)[0]
    explorer.image = replacement
    assert [c["new"] for c in changes] == [replacement] and explorer.images[0] is replacement
    explorer.controls.next.click()  # the image follows the index
    assert changes[-1]["new"] is images[1] and explorer.image is images[1]
    explorer.set(index=0)
    assert changes[-1]["new"] is replacement and len(changes) == 3


def test_a_batch_is_announced_once_per_field_after_it_is_all_set(explorer):
    seen = []
    def record(change):
        seen.append((change["name"], explorer.method, explorer.layer, explorer.params["samples"]))

    explorer.observe(record, names=["method", "layer", "params", "opacity"])
    explorer.set(method="smoothgrad", layer="act1", params={"samples": 3})  # the method is unchanged
    assert sorted(seen) == [("layer", "smoothgrad", "act1", 3), ("params", "smoothgrad", "act1", 3)]
    assert explorer.controls.layer.value == "act1"  # the controls already show it


def test_a_new_method_resets_its_params_and_says_so(explorer):
    changes = heard(explorer, "params")
    explorer.method = "integrated_gradients"
    assert changes[-1]["new"] == nbx.method_info("integrated_gradients").bind({})
    assert set(explorer.controls.param_widgets) == {"steps", "baseline", "rule"}


def test_a_new_index_clears_the_mask_and_says_so(explorer):
    explorer.mask = square()
    changes = heard(explorer, "mask")
    explorer.controls.next.click()
    assert len(changes) == 1 and not changes[0]["new"].any() and not explorer.canvas.mask.any()


def test_no_change_announces_nothing(explorer):
    changes = heard(explorer, t.All)
    explorer.layer = explorer.layer
    explorer.set(opacity=explorer.opacity, params={"samples": 2}, mask=None)  # what it has
    explorer.controls.opacity.value = explorer.opacity
    explorer.controls.clear.click()
    assert changes == []


def test_bad_values_from_code_raise_and_announce_nothing(explorer):
    changes = heard(explorer, t.All)
    with pytest.raises(ValueError, match="opacity"):
        explorer.set(layer="act1", opacity=5)  # checked as a whole: the layer stays too
    with pytest.raises(ValueError, match="layer 'nope'"):
        explorer.layer = "nope"
    with pytest.raises(TypeError, match="params must be a dict"):
        explorer.params = [1]
    with pytest.raises(ValueError, match="unknown parameter"):
        explorer.set(method="saliency", params={"samples": 3})  # checked against the new method
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['colour'\]; valid: \['method'"):
        explorer.set(colour="red")
    assert changes == [] and explorer.layer == "act3" and explorer.method == "smoothgrad"


def test_a_bad_value_from_a_control_is_shown_and_announces_nothing(explorer):
    changes = heard(explorer, t.All)
    explorer.controls.target.search.value = "no such class"
    explorer.controls.target.search._handle_custom_msg({"event": "submit"}, [])  # Enter: typing is done
    assert "no such class" in explorer.error and explorer.target is None
    assert explorer.controls.target.search.value == ""  # the control shows the state again
    explorer.controls.param_widgets["seed"].value = -1
    assert "seed" in explorer.error and explorer.controls.param_widgets["seed"].value == 0
    assert changes == []


def test_an_observer_error_after_a_control_change_is_shown_in_the_widget(explorer):
    def fail(change):
        raise RuntimeError("the observer broke")

    explorer.observe(fail, names="opacity")
    explorer.controls.opacity.value = 0.9
    assert explorer.opacity == 0.9 and explorer.canvas.opacity == 0.9  # applied, then announced
    assert "the observer broke" in explorer.error
    with pytest.raises(RuntimeError, match="the observer broke"):
        explorer.opacity = 0.1  # from code it raises


def test_an_observer_may_wait_for_the_worker(explorer, ex, images):
    """Observers hear a change once the widget's lock is released: the worker takes it to show
    the predictions it computed for the new mask."""
    seen = []
    explorer.observe(lambda change: seen.append(explorer.wait(10).predictions), names="mask")
    explorer.mask = square()
    explorer.mode = "brush"
    stroke(explorer.canvas)  # and from the canvas
    assert seen[0] == ex.occlude(images[0], square(), baseline="blur", topk=5)
    assert seen[1] == ex.occlude(images[0], explorer.mask, baseline="blur", topk=5)


def test_fields_and_their_order(explorer, compare):
    assert Explorer.fields() == ("method", "layer", "target", "params", "opacity", "cmap", "mode",
                                 "brush_size", "baseline", "mask", "image", "index")
    assert Compare.fields() == ("layer", "target", "opacity", "cmap", "params")
    assert set(Explorer.fields()) <= set(explorer.trait_names())


# -- Compare -----------------------------------------------------------------------------------
COMPARE = {
    "layer": ("act1", lambda c: setattr(c.layer_slider, "value", "act2"), "act2"),
    "target": (3, lambda c: setattr(c.picker.dropdown, "value", c.predictions[1].index), None),
    "opacity": (0.3, lambda c: setattr(c.opacity_slider, "value", 0.9), 0.9),
    "cmap": ("viridis", lambda c: setattr(c.cmap_picker, "value", "gray"), "gray"),
}


@pytest.mark.parametrize("name", list(COMPARE))
def test_compare_field_is_heard_from_code_and_from_its_control(compare, name):
    value, move_control, expected = COMPARE[name]
    before = getattr(compare, name)
    changes = heard(compare, name)
    setattr(compare, name, value)
    assert [(c["old"], c["new"]) for c in changes] == [(before, value)]
    compare.set(**{name: before})
    assert len(changes) == 2
    move_control(compare)
    compare.wait(30)
    expected = compare.predictions[1].index if expected is None else expected
    assert len(changes) == 3 and changes[2]["new"] == expected == getattr(compare, name)


def test_compare_params_are_heard_from_code_and_recompute_only_their_method(compare):
    changes = heard(compare, "params")
    shown = compare.explanations
    compare.params = {"saliency": {}, "integrated_gradients": {"steps": 4}}  # what it has
    assert changes == []
    compare.params = {"integrated_gradients": {"steps": 5}}
    compare.wait(30)
    assert len(changes) == 1 and changes[0]["new"]["integrated_gradients"]["steps"] == 5
    assert changes[0]["new"]["saliency"] == {}
    assert compare.explanations["integrated_gradients"].params["steps"] == 5
    assert all(compare.explanations[name] is shown[name] for name in ("saliency", "gradcam"))
    compare.set(params={"integrated_gradients": {"steps": 4}}, target=2).wait(30)
    assert len(changes) == 2 and all(e.target == 2 for e in compare.explanations.values())
    with pytest.raises(ValueError, match="params must map some of the methods"):
        compare.params = {"smoothgrad": {}}
    assert len(changes) == 2


# -- the mechanism, on a host with no widgets ---------------------------------------------------
class Range(StateHost):
    low = Field("the lower end")
    high = Field("the upper end")
    reactions = Reactions(
        show("low", "high", do="draw"),
        start("low", do="compute"),
        start("high", do="compute", when=lambda host: host.wanted),
    )

    def __init__(self):
        super().__init__()
        self.log: list[str] = []
        self.errors: list[str] = []
        self.wanted = True
        self._start({"low": 0, "high": 10})

    @t.validate("low")
    def _valid_low(self, proposal):
        if proposal.value < 0:
            raise ValueError(f"low must be >= 0; got {proposal.value}")
        return proposal.value

    @t.validate("high")
    def _valid_high(self, proposal):
        if proposal.value < proposed(proposal, "low"):  # the batch's low, if it sets one
            raise ValueError("high must be >= low")
        return proposal.value

    def draw(self):
        self.log.append(f"draw {self.low}..{self.high}")

    def compute(self):
        self.log.append("compute")

    def _show_error(self, error, source):
        self.errors.append(str(error))

    def _clear_error(self, source):
        self.errors.clear()


def test_the_mechanism_checks_a_batch_as_a_whole_and_runs_each_row_once():
    host = Range()
    changes = heard(host, t.All)
    host.set(low=20, high=30)  # one draw, one compute (two rows name it)
    assert host.log == ["draw 20..30", "compute"] and [c["name"] for c in changes] == ["low", "high"]
    with pytest.raises(ValueError, match="high must be >= low"):
        host.set(low=25, high=22)  # 22 >= the current low, not the batch's: nothing is set
    with pytest.raises(ValueError, match="low must be >= 0"):
        host.set(high=50, low=-1)
    assert (host.low, host.high, len(changes)) == (20, 30, 2)
    host.wanted, host.log = False, []
    host.high = 31
    assert host.log == ["draw 20..31"]  # the row's condition is false: nothing computed
    host.from_control("low", -5)  # shown, not raised; only the rows that show run again
    assert host.errors == ["low must be >= 0; got -5"] and host.log == ["draw 20..31", "draw 20..31"]
    host.from_control("low", 1)
    assert host.errors == [] and host.low == 1 and host.log[-2:] == ["draw 1..31", "compute"]
    assert len(changes) == 4


def test_a_field_compares_with_its_own_same_and_copies_with_read():
    class Box(StateHost):
        items = Field("a list", same=lambda a, b: sorted(a or []) == sorted(b or []), read=list)

    box = Box()
    changes = heard(box, "items")
    box.items = [2, 1]
    box.items = [1, 2]  # the same, by ``same``
    box.items.append(3)  # a copy: the state is untouched
    assert box.items == [2, 1] and len(changes) == 1
