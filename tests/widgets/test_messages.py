"""Hostile input from the page, sent through the widgets' own message dispatch.

Custom messages go to ``canvas._handle_custom_msg(content, [])`` and trait writes to
``widget._handle_msg(...)`` (what ipywidgets' comm calls): each is answered within a time and
memory bound, refused cleanly when it is malformed, and the widget works afterwards. The last
test fuzzes both with hypothesis.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import tracemalloc
from contextlib import contextmanager
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbexplain as nbx
from nbexplain.widgets import messages
from nbexplain.widgets.canvas import MODES, HeatmapCanvas
from nbexplain.widgets.explorer import Explorer
from nbexplain.widgets.raster import bresenham, paint_stroke
from tests.models import LABELS, TinyCNN, example_input

BOUND_S = 1.0  # a message is answered within this (a busy 2-core machine; most take < 5 ms)


def brush_canvas(h=64, w=64, **kw) -> HeatmapCanvas:
    return HeatmapCanvas(np.zeros((h, w, 3), np.uint8), **{"mode": "brush", **kw})


def answered(handler, *args, limit: float = BOUND_S) -> float:
    """Run ``handler(*args)`` on a thread; fail if it has not returned within ``limit`` seconds
    (the thread is left behind, so a hang fails the test instead of blocking the suite)."""
    raised: list[BaseException] = []

    def run():
        try:
            handler(*args)
        except BaseException as error:  # reported below
            raised.append(error)

    thread = threading.Thread(target=run, daemon=True)
    started = time.perf_counter()
    thread.start()
    thread.join(limit)
    elapsed = time.perf_counter() - started
    assert not thread.is_alive(), f"not answered within {limit} s"
    assert not raised, f"raised into the notebook: {raised[0]!r}"
    return elapsed


def update(widget, state: dict) -> None:
    """A trait write from the page, as ipywidgets' comm delivers it."""
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
                        "buffers": []})


@contextmanager
def peak_bytes():
    """The peak of the memory Python and numpy allocate inside the block (tracemalloc)."""
    tracemalloc.start()
    result = {}
    try:
        yield result
    finally:
        result["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def walk(points, radius, shape):
    """The reference: a disc at every pixel of every segment's full walk."""
    mask = np.zeros(shape, np.uint8)
    h, w = shape
    for (ax, ay), (bx, by) in itertools.pairwise(points):
        for x, y in bresenham(ax, ay, bx, by):
            if -radius <= x < w + radius and -radius <= y < h + radius:
                paint_stroke(mask, [(x, y)], radius, 255)
    return mask


# -- strokes -----------------------------------------------------------------------------------
def test_a_segment_far_off_the_canvas_is_clipped_before_it_is_walked():
    canvas = brush_canvas()
    message = {"type": "stroke", "points": [[0, 0], [1_000_000, 1_000_000]], "size": 2, "final": True}
    assert answered(canvas._handle_custom_msg, message, []) < BOUND_S
    assert canvas.error == "" and canvas.mask_u8[63, 63] == 255
    np.testing.assert_array_equal(canvas.mask_u8, walk([(0, 0), (64 + 2, 64 + 2)], 2, (64, 64)))


def test_the_issues_stroke_to_1e18_is_refused_at_once():
    canvas = brush_canvas()
    message = {"type": "stroke", "points": [[0, 0], [1e18, 1e18]], "final": True}
    assert answered(canvas._handle_custom_msg, message, []) < BOUND_S
    assert not canvas.mask_u8.any() and "points[1][0]" in canvas.error and canvas.refused["stroke"] == 1


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "3", True, None, [1, 2], 1e300, 2**70])
def test_a_coordinate_that_is_not_a_finite_number_is_refused(bad):
    canvas = brush_canvas()
    calls = []
    canvas.on_mask(lambda mask, final: calls.append(final))
    version = canvas.mask_version
    answered(canvas._handle_custom_msg, {"type": "stroke", "points": [[5, 5], [bad, 9]], "final": True}, [])
    assert not canvas.mask_u8.any() and calls == []
    assert "stroke points[1][0] must be a finite number" in canvas.error
    assert canvas.mask_version == version + 1  # the page is sent the kernel's mask again


def test_points_per_message_are_capped():
    canvas = brush_canvas()
    points = [[i % 64, (i // 64) % 64] for i in range(messages.MAX_POINTS + 1)]
    answered(canvas._handle_custom_msg, {"type": "stroke", "points": points, "final": True}, [])
    assert not canvas.mask_u8.any() and f"at most {messages.MAX_POINTS}" in canvas.error
    fewer = {"type": "stroke", "points": points[:-1], "size": 0, "final": True}
    answered(canvas._handle_custom_msg, fewer, [])
    assert canvas.mask_u8.all() and "at most" in canvas.error  # the error stays until dismissed


def test_a_huge_brush_is_capped_in_time_and_memory():
    canvas = brush_canvas()
    with peak_bytes() as memory:
        huge = {"type": "stroke", "points": [[3, 3]], "size": 4000, "final": True}
        answered(canvas._handle_custom_msg, huge, [])
    assert canvas.mask_u8.all()  # as big a disc as can matter: the whole picture
    assert memory["peak"] < 8 * 2**20, memory  # was 8001² int64 offsets (512 MB) and a kept 64 MB disc
    canvas.clear_mask()
    answered(canvas._handle_custom_msg, {**huge, "size": 1e300}, [])
    assert canvas.mask_u8.all()
    for bad in (-1, "5", math.nan, math.inf, False):
        canvas.clear_mask()
        answered(canvas._handle_custom_msg, {"type": "stroke", "points": [[3, 3]], "size": bad}, [])
        assert not canvas.mask_u8.any() and "stroke 'size'" in canvas.error, bad


def test_booleans_are_strict():
    canvas = brush_canvas()
    stroke = {"type": "stroke", "points": [[10, 10], [30, 10]], "size": 3, "final": True}
    canvas._handle_custom_msg(stroke, [])
    painted = canvas.mask_u8
    assert painted.any()
    for erase in ("false", "true", 0, 1, None, [False]):
        canvas._handle_custom_msg({**stroke, "erase": erase}, [])
        np.testing.assert_array_equal(canvas.mask_u8, painted)  # "false" does not erase
        assert "'erase' must be true or false" in canvas.error
    canvas._handle_custom_msg({**stroke, "final": "yes"}, [])
    assert "'final' must be true or false" in canvas.error
    canvas._handle_custom_msg({**stroke, "erase": True}, [])
    assert not canvas.mask_u8.any()


def test_strokes_and_patches_are_taken_in_their_modes_only():
    canvas = brush_canvas()
    masks, patches, picks = [], [], []
    canvas.on_mask(lambda mask, final: masks.append(final))
    canvas.on_patch(patches.append)
    canvas.on_pick(lambda x, y: picks.append((x, y)))
    stroke = {"type": "stroke", "points": [[10, 10], [20, 20]], "size": 2, "final": True}
    patch = {"type": "patch", "x": 8, "y": 8, "size": 4}
    pick = {"type": "pick", "x": 3, "y": 4}
    for mode in ("explain", "patch"):
        canvas.mode = mode
        version = canvas.mask_version
        canvas._handle_custom_msg(stroke, [])
        assert not canvas.mask_u8.any() and masks == [] and canvas.mask_version == version + 1
    canvas._handle_custom_msg(patch, [])
    canvas.mode = "brush"
    canvas._handle_custom_msg(patch, [])
    canvas._handle_custom_msg(pick, [])
    assert len(patches) == 1 and canvas.patch is None and picks == []  # only the one in patch mode
    assert canvas.refused == {"stroke": 2, "patch": 1, "pick": 1} and canvas.error == ""  # quietly
    canvas._handle_custom_msg(stroke, [])
    assert masks == [True] and canvas.mask_u8.any()


def test_patch_pick_and_rendered_values_are_checked():
    canvas = brush_canvas(mode="patch")
    got = []
    canvas.on_patch(got.append)
    canvas._handle_custom_msg({"type": "patch", "x": 10, "y": 10, "size": 10**9}, [])
    assert canvas.patch == (10, 10, 129) and got[-1].all()  # a side past twice the picture: capped
    for bad in (math.nan, "1", None):
        canvas._handle_custom_msg({"type": "patch", "x": 10, "y": bad}, [])
        assert "patch 'y'" in canvas.error and len(got) == 1
    canvas.mode = "explain"
    picks = []
    canvas.on_pick(lambda x, y: picks.append((x, y)))
    for x in (math.nan, -1, 64, "3"):
        canvas._handle_custom_msg({"type": "pick", "x": x, "y": 3}, [])
    assert picks == [] and "pick" in canvas.error
    for bad in ({"latency_ms": math.nan}, {"latency_ms": -5}, {"t_event": 0, "t_paint": math.inf},
                {"latency_ms": "12"}):
        canvas._handle_custom_msg({"type": "rendered", **bad}, [])
    assert canvas.last_latency_ms is None and list(canvas.latencies_ms) == []


def test_errors_are_bounded_in_number_and_length():
    canvas = brush_canvas()
    for i in range(500):
        canvas._handle_custom_msg({"type": "stroke", "points": [[0, "x" * 100_000]], "final": i % 2 == 0}, [])
    assert len(canvas.errors) == messages.MAX_ERRORS and canvas.refused["stroke"] == 500
    assert len(canvas.error) < 300 and max(len(text) for text in canvas.errors) < 5000


def test_unknown_and_unhashable_message_types_are_ignored():
    canvas = brush_canvas()
    for content in ({"type": ["stroke"]}, {"type": {"a": 1}}, {"type": None}, [1, 2], None, 7):
        answered(canvas._handle_custom_msg, content, [])
    assert canvas.error == "" and not canvas.mask_u8.any()


# -- trait writes from the page ----------------------------------------------------------------
@pytest.mark.parametrize("shape", [[16000, 16000], [8, 8], [-1, -1], [2**40, 3]])
def test_image_shape_is_the_kernels_own(shape, monkeypatch):
    canvas = brush_canvas()
    sent = []
    monkeypatch.setattr(canvas, "_send", lambda msg, buffers=None: sent.append(msg))
    answered(update, canvas, {"image_shape": shape})
    assert canvas.image_shape == (64, 64) and canvas.shape == (64, 64)
    assert {"method": "update", "state": {"image_shape": (64, 64)}, "buffer_paths": []} in sent
    stroke = {"type": "stroke", "points": [[10, 10], [20, 12]], "size": 3, "final": True}
    with peak_bytes() as memory:
        answered(canvas._handle_custom_msg, stroke, [])
    assert memory["peak"] < 4 * 2**20  # a 16000² mask was 256 MB (4.6 GiB with its copies)
    np.testing.assert_array_equal(canvas.mask_u8, walk([(10, 10), (20, 12)], 3, (64, 64)))


def test_the_page_may_only_dismiss_an_error_and_count_views(monkeypatch):
    canvas = brush_canvas(opacity=0.4, cmap="viridis", brush_size=5)
    canvas.show_error("something broke")
    before = {name: getattr(canvas, name) for name in canvas.keys}
    sent = []
    monkeypatch.setattr(canvas, "_send", lambda msg, buffers=None: sent.append(msg))
    hostile = {"mode": "explain", "brush_size": 4000, "opacity": 7, "cmap": "nope", "mask_version": -3,
               "busy": "yes", "heatmap_shape": [9, 9], "signed": True, "error": "<b>fake</b>"}
    update(canvas, hostile)
    assert {name: getattr(canvas, name) for name in canvas.keys} == before
    assert set(sent[-1]["state"]) == set(hostile) and canvas.refused["state"] == 1
    update(canvas, {"error": "", "_view_count": 2})
    assert canvas.error == "" and canvas._view_count == 2


# -- the Explorer's panels ---------------------------------------------------------------------
def test_a_nan_click_on_the_feature_panel_does_not_raise_into_the_notebook(monkeypatch):
    import ipywidgets.widgets.widget as widget_module

    shown = []
    monkeypatch.setattr(widget_module, "get_ipython", lambda: type("IP", (), {
        "showtraceback": lambda self, *a, **k: shown.append("traceback")})())
    explorer = Explorer(nbx.Explainer(TinyCNN().eval(), labels=LABELS), example_input()[0]).wait(30)
    try:
        explorer.panels.selected_index = 0
        explorer.wait(30)
        canvas = explorer.features.canvas
        for x, y in ((math.nan, 5), (5, math.inf), (-math.inf, math.nan), ("3", 5), (None, 5)):
            canvas._handle_custom_msg({"event": "mouse_down", "x": x, "y": y}, [])
        assert shown == [] and explorer.method == "gradcam"
    finally:
        explorer.close()


# -- fuzzing -----------------------------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)
COORDINATE = st.integers(-40, 80) | st.integers(-(2**64), 2**64) | st.floats() | JSON
POINT = st.lists(COORDINATE, min_size=2, max_size=2) | JSON
MESSAGE = st.one_of(
    st.fixed_dictionaries({"type": st.just("stroke"), "points": st.lists(POINT, max_size=40) | JSON},
                          optional={"size": st.integers(-3, 10**9) | st.floats() | JSON,
                                    "erase": st.booleans() | JSON, "final": st.booleans() | JSON}),
    st.fixed_dictionaries({"type": st.just("patch"), "x": COORDINATE, "y": COORDINATE},
                          optional={"size": st.integers(-3, 10**9) | JSON}),
    st.fixed_dictionaries({"type": st.sampled_from(["pick", "rendered", "hover", ""])},
                          optional={"x": COORDINATE, "y": COORDINATE, "latency_ms": COORDINATE,
                                    "t_event": COORDINATE, "t_paint": COORDINATE}),
    JSON,
)
SHAPE = st.lists(st.integers(-(2**40), 2**40) | st.integers(-2, 20000), min_size=2, max_size=2) | JSON
STATE = st.fixed_dictionaries({}, optional={
    "image_shape": SHAPE, "heatmap_shape": SHAPE, "mode": st.sampled_from(MODES) | JSON,
    "brush_size": st.integers(-5, 10**7) | JSON, "opacity": st.floats() | JSON,
    "cmap": st.text(max_size=8) | JSON,
    "mask_version": st.integers(-(2**40), 2**40) | JSON, "error": st.just("") | JSON, "busy": JSON,
    "signed": JSON, "_view_count": st.integers(-2, 3) | JSON,
})
EVENT = st.one_of(st.tuples(st.just("message"), MESSAGE), st.tuples(st.just("canvas"), STATE),
                  st.tuples(st.just("views"), st.integers(-1, 2) | JSON))


@pytest.fixture(scope="module")
def session():
    ex = nbx.Explainer(TinyCNN().eval(), labels=LABELS)
    x = example_input()[0]
    explorer = Explorer(ex, x, baseline="zeros").wait(30)
    yield ex, x, explorer
    explorer.close()


@settings(max_examples=60, deadline=timedelta(seconds=20), database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(MODES), events=st.lists(EVENT, max_size=6))
def test_fuzzed_messages_and_trait_writes_leave_a_working_explorer(session, mode, events):
    ex, x, explorer = session
    explorer.set(mode=mode)
    canvas = explorer.canvas
    names = ("image_shape", "mode", "brush_size", "opacity", "cmap")
    kernel = {name: getattr(canvas, name) for name in names}
    with peak_bytes() as memory:
        for kind, value in events:
            if kind == "message":
                answered(canvas._handle_custom_msg, value, [])
            elif kind == "canvas":
                answered(update, canvas, value)
            else:  # the page counting the Explorer's views
                answered(update, explorer.widget, {"_view_count": value})
    assert memory["peak"] < 32 * 2**20, memory
    assert {name: getattr(canvas, name) for name in kernel} == kernel  # the kernel's values stand
    explorer.wait(30)
    assert explorer.mask.shape == (16, 16) and np.array_equal(explorer.mask, canvas.mask)
    # still works: a valid stroke paints the right pixels and the predictions follow
    explorer.set(mode="brush")
    before = canvas.mask_u8
    canvas._handle_custom_msg({"type": "stroke", "points": [[3, 3], [11, 6]], "size": 2, "erase": False,
                               "final": True}, [])
    np.testing.assert_array_equal(canvas.mask_u8, paint_stroke(before, [(3, 3), (11, 6)], 2, 255))
    explorer.wait(30)
    assert np.array_equal(explorer.mask, canvas.mask)
    assert explorer.predictions == ex.occlude(x, explorer.mask, baseline="zeros", topk=5)
    explorer.mask = None
