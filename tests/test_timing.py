"""The timing core, driven by a fake clock: the arithmetic is checked exactly."""

import pytest

from effcourse import timing


class FakeClock:
    """Each task advances the clock by the next of its scripted durations when it runs."""

    def __init__(self):
        self.now = 0.0
        self.log = []

    def __call__(self):
        return self.now

    def task(self, name, durations):
        durations = list(durations)

        def run():
            self.log.append(name)
            self.now += durations.pop(0)

        return run


def test_rotation_rotates_left_by_round():
    assert timing.rotation(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert timing.rotation(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert timing.rotation(["a", "b", "c"], 4) == ["b", "c", "a"]


def test_medians_p90_and_spread_are_exact():
    clock = FakeClock()
    # warm-up 1 each (durations ignored), then 3 rounds x 3 runs
    a = clock.task("a", [100] + [1, 2, 9] + [2, 2, 2] + [3, 4, 5])
    b = clock.task("b", [100] + [4, 4, 4] + [6, 8, 7] + [1, 4, 10])
    res = timing.interleaved({"a": a, "b": b}, rounds=3, runs=3, warmup=1, clock=clock)
    assert res["a"].times == [[1, 2, 9], [2, 2, 2], [3, 4, 5]]
    assert list(res["a"].round_medians) == [2, 2, 4]
    assert res["a"].median == 2 and res["a"].spread == (2, 4)
    assert list(res["b"].round_medians) == [4, 7, 4]
    assert res["b"].median == 4
    # p90 of [1, 2, 9] is 2 + 0.8 * 7 = 7.6; of [2, 2, 2] is 2; of [3, 4, 5] is 4.8
    assert res["a"].p90 == pytest.approx(4.8)
    assert clock.log[:2] == ["a", "b"]  # warm-up first, untimed


def test_order_rotates_between_rounds():
    clock = FakeClock()
    tasks = {k: clock.task(k, [0.0] * 10) for k in "xyz"}
    res = timing.interleaved(tasks, rounds=3, runs=1, warmup=0, clock=clock)
    assert res.orders == [["x", "y", "z"], ["y", "z", "x"], ["z", "x", "y"]]
    assert clock.log == ["x", "y", "z", "y", "z", "x", "z", "x", "y"]


def test_sync_is_called_before_the_clock_is_read():
    events = []
    now = [0.0]

    def clock():
        events.append("clock")
        return now[0]

    def work():
        events.append("work")

    def sync():
        events.append("sync")
        now[0] += 5.0  # the device finishes its queued work only now

    res = timing.interleaved({"op": work}, rounds=1, runs=1, warmup=0, clock=clock, sync=sync)
    assert events == ["clock", "work", "sync", "clock"]
    assert res["op"].median == 5.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rounds": 0}, "rounds"),
        ({"runs": 1.5}, "runs"),
        ({"warmup": -1}, "warmup"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs, match):
    with pytest.raises(ValueError, match=match):
        timing.interleaved({"a": lambda: None}, **kwargs)
    with pytest.raises(ValueError, match="at least one task"):
        timing.interleaved({})
    with pytest.raises(TypeError, match="callable"):
        timing.interleaved({"a": 3})


def test_device_sync_is_decided_once_per_machine():
    import tensorflow as tf

    assert timing.device_sync(list_gpus=lambda: []) is None  # CPU only: nothing inside the timed region
    assert timing.device_sync(list_gpus=lambda: ["GPU:0"]) is tf.test.experimental.sync_devices
