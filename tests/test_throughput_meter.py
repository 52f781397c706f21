"""The engine's throughput meter (EngineStats.prefill/decode_tokens_per_s), on a fake clock."""
import pytest

from nbinfer.engine.stats import ThroughputMeter


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_steps(meter, clock, seconds, step_s=0.1, prefill=0, decode=10):
    for _ in range(round(seconds / step_s)):
        start = clock.now
        clock.now += step_s
        meter.record(start, prefill, decode)


def test_rates_while_running():
    clock = Clock()
    meter = ThroughputMeter(window_s=5.0, clock=clock)
    run_steps(meter, clock, 3.0, prefill=2, decode=10)
    prefill, decode = meter.rates()
    assert decode == pytest.approx(100.0) and prefill == pytest.approx(20.0)
    run_steps(meter, clock, 10.0, decode=20)          # only the last window counts
    assert meter.rates()[1] == pytest.approx(200.0, rel=0.03)


def test_rates_fall_to_zero_when_idle():
    # the dashboard read "idle · decode 239 tok/s" for seconds after a run had finished
    clock = Clock()
    meter = ThroughputMeter(window_s=5.0, clock=clock)
    run_steps(meter, clock, 3.0)
    clock.now += 0.5                                  # a pause shorter than IDLE_S: still running
    assert meter.rates()[1] > 0
    clock.now += 1.0
    assert meter.rates() == (0.0, 0.0)
    clock.now += 10.0
    assert meter.rates() == (0.0, 0.0)


def test_slow_steps_do_not_read_as_idle():
    # 3-second steps (a big prefill on a CPU): between two step ends the engine is busy, not idle
    clock = Clock()
    meter = ThroughputMeter(window_s=5.0, clock=clock)
    run_steps(meter, clock, 6.0, step_s=3.0, prefill=3000, decode=0)
    clock.now += 2.0
    assert meter.rates()[0] == pytest.approx(6000 / 8.0)
    clock.now += 5.0
    assert meter.rates() == (0.0, 0.0)
