"""The widgets' worker thread: latest request wins, lanes, cancellation, closing."""

from __future__ import annotations

import threading
import time

import pytest

from nbexplain.widgets.scheduler import Scheduler


def blocker(scheduler: Scheduler, lane: str = "a") -> threading.Event:
    """Occupy the worker until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def run(job):
        started.set()
        release.wait(10)

    scheduler.submit(lane, run)
    assert started.wait(5)
    return release


def test_latest_request_wins_and_stale_ones_are_dropped():
    scheduler = Scheduler(["a"])
    ran = []
    release = blocker(scheduler)
    for i in range(20):
        scheduler.submit("a", lambda job, i=i: ran.append(i))
    release.set()
    assert scheduler.wait(5)
    assert ran == [19]
    assert scheduler.dropped == 19
    assert scheduler.submitted == 21 and scheduler.ran == 2
    scheduler.close()


def test_lanes_are_served_in_declared_order():
    scheduler = Scheduler(["fast", "slow"])
    ran = []
    release = blocker(scheduler, "slow")
    scheduler.submit("slow", lambda job: ran.append("slow"))
    scheduler.submit("fast", lambda job: ran.append("fast"))
    release.set()
    assert scheduler.wait(5)
    assert ran == ["fast", "slow"]
    scheduler.close()


def test_a_newer_request_asks_the_running_one_to_stop():
    scheduler = Scheduler(["a"])
    seen, started = [], threading.Event()

    def long(job):
        started.set()
        deadline = time.monotonic() + 5
        while not job.should_stop() and time.monotonic() < deadline:
            time.sleep(0.005)
        seen.append(job.should_stop())

    scheduler.submit("a", long)
    assert started.wait(5)
    scheduler.submit("a", lambda job: seen.append("next"))
    assert scheduler.wait(5)
    assert seen == [True, "next"]
    scheduler.close()


def test_cancel_drops_pending_and_stops_running():
    scheduler = Scheduler(["a"])
    release = blocker(scheduler)
    ran = []
    scheduler.submit("a", lambda job: ran.append(1))
    scheduler.cancel("a")
    release.set()
    assert scheduler.wait(5)
    assert ran == []
    scheduler.close()


def test_wait_times_out_while_busy():
    scheduler = Scheduler(["a"])
    release = blocker(scheduler)
    assert scheduler.wait(0.05) is False
    assert not scheduler.idle
    release.set()
    assert scheduler.wait(5) and scheduler.idle
    scheduler.close()


def test_close_joins_the_thread_and_refuses_new_requests():
    scheduler = Scheduler(["a"])
    scheduler.submit("a", lambda job: None)
    thread = scheduler.thread
    assert scheduler.close(5)
    assert thread is None or not thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.submit("a", lambda job: None)


def test_close_stops_a_job_that_checks_should_stop():
    scheduler = Scheduler(["a"])
    started = threading.Event()

    def long(job):
        started.set()
        while not job.should_stop():
            time.sleep(0.005)

    scheduler.submit("a", long)
    assert started.wait(5)
    assert scheduler.close(5)
    assert not any(t.name == scheduler.name and t.is_alive() for t in threading.enumerate())


def test_idle_worker_exits_and_restarts_on_demand():
    scheduler = Scheduler(["a"], idle_exit=0.05)
    scheduler.submit("a", lambda job: None)
    first = scheduler.thread
    assert scheduler.wait(5)
    first.join(5)
    assert not first.is_alive()
    ran = []
    scheduler.submit("a", lambda job: ran.append(1))
    assert scheduler.wait(5) and ran == [1]
    scheduler.close()


def test_an_unhandled_job_error_goes_to_on_error_and_the_worker_survives():
    errors = []
    scheduler = Scheduler(["a"], on_error=lambda job, error: errors.append(error))
    scheduler.submit("a", lambda job: 1 / 0)
    assert scheduler.wait(5)
    ran = []
    scheduler.submit("a", lambda job: ran.append(1))
    assert scheduler.wait(5)
    assert isinstance(errors[0], ZeroDivisionError) and ran == [1]
    scheduler.close()


def test_service_runs_a_cheap_lane_inside_a_long_job():
    scheduler = Scheduler(["fast", "slow"])
    order, started, queued = [], threading.Event(), threading.Event()

    def long(job):
        order.append("slow start")
        started.set()
        assert queued.wait(5)
        scheduler.service(["fast"])
        order.append("slow end")

    scheduler.submit("slow", long)
    assert started.wait(5)
    scheduler.submit("fast", lambda job: order.append("fast"))
    queued.set()
    assert scheduler.wait(5)
    assert order == ["slow start", "fast", "slow end"]
    with pytest.raises(RuntimeError, match="worker thread"):
        scheduler.service(["fast"])
    scheduler.close()


def test_lanes_are_checked():
    with pytest.raises(ValueError, match="lanes"):
        Scheduler([])
    scheduler = Scheduler(["a"])
    with pytest.raises(ValueError, match="unknown lane 'b'"):
        scheduler.submit("b", lambda job: None)


def test_close_all_stops_every_running_worker_as_the_interpreter_exits():
    """``close_all`` runs at exit (atexit), before Python kills daemon threads: a worker killed
    inside torch's C++ code would abort the process (exit status 134)."""
    from nbexplain.widgets.scheduler import close_all

    started, workers = threading.Event(), [Scheduler(["a"]) for _ in range(3)]

    def spin(job):
        started.set()
        while not job.should_stop():
            time.sleep(0.005)

    for worker in workers:
        worker.submit("a", spin)
    started.wait(5)
    threads = [worker.thread for worker in workers]
    close_all(timeout=5)
    assert all(worker.closed for worker in workers) and not any(t.is_alive() for t in threads)
