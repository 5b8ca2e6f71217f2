import threading

import pytest

from explain.lanes import Lanes, spread, threads_per_lane


def test_new_rows_go_to_the_lanes_with_fewest_rows():
    assert spread([3, 0], 4) == [1, 1, 1, 0]
    assert spread([2, 2, 1], 3) == [2, 0, 1]
    assert spread([0], 2) == [0, 0]


def test_each_lane_gets_its_share_of_the_threads(monkeypatch):
    assert threads_per_lane(4, 2) == 2
    assert threads_per_lane(3, 2) == 1
    assert threads_per_lane(1, 4) == 1  # never zero, which would mean every core
    assert threads_per_lane(0, 1) == 0  # one lane keeps ONNX Runtime's default
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert threads_per_lane(0, 2) == 4


def test_parts_run_at_once_and_a_failing_part_leaves_the_others():
    lanes = Lanes(2)
    barrier = threading.Barrier(2, timeout=10)  # both calls must be running together

    def ok():
        barrier.wait()
        return threading.current_thread().name

    def bad():
        barrier.wait()
        raise RuntimeError("this part failed")

    first, second = lanes.run([ok, bad])
    assert isinstance(first, str) and first.startswith("prism-lane")
    assert isinstance(second, RuntimeError)


def test_one_lane_runs_on_the_callers_thread():
    lanes = Lanes(1)
    assert lanes.run([lambda: threading.current_thread().name]) == [threading.current_thread().name]
    with pytest.raises(ValueError):
        Lanes(0)
