"""Engine calls on one model from several threads take turns and leave it as it was."""

from __future__ import annotations

import threading

import nbexplain as nbx
from nbexplain.engine.guard import model_lock, preserved
from tests.models import ReusedReLUNet, example_input
from tests.untouched import ModelState


def test_concurrent_calls_on_one_model_leave_it_untouched():
    model = ReusedReLUNet()
    before = ModelState.take(model)
    explainer = nbx.Explainer(model)
    x = example_input()
    errors: list[BaseException] = []

    def work(method: str) -> None:
        try:
            for _ in range(15):
                explainer.explain(x, method)
                explainer.predict(x)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(m,)) for m in ("saliency", "gradcam", "smoothgrad")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert model.training and all(p.requires_grad for p in model.parameters())
    before.assert_same(model)


def test_the_lock_is_reentrant_and_held_while_preserved():
    model = ReusedReLUNet()
    lock = model_lock(model)
    assert model_lock(model) is lock
    with preserved(model):
        with preserved(model):
            assert not model.training
        seen = []
        other = threading.Thread(target=lambda: seen.append(lock.acquire(blocking=False)))
        other.start()
        other.join()
        assert seen == [False]
    assert model.training
    assert lock.acquire(blocking=False)
    lock.release()
