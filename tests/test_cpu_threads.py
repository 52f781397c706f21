"""The CPU thread tuner tries each thread count per step size, then keeps the faster."""
import torch

from nbinfer.engine import cpu_threads
from nbinfer.engine.cpu_threads import ThreadTuner


def test_tuner_alternates_then_keeps_the_faster(monkeypatch):
    clock = {"t": 0.0}
    cost = {1: 0.010, 2: 0.030}            # one thread is faster for this step size
    monkeypatch.setattr(cpu_threads.time, "perf_counter", lambda: clock["t"])
    before = torch.get_num_threads()
    tuner = ThreadTuner(2)
    tried = []
    for _ in range(2 * cpu_threads.TRIALS):
        with tuner.step(32):
            n = torch.get_num_threads()
            tried.append(n)
            clock["t"] += cost[n]
        assert torch.get_num_threads() == before
    assert sorted(tried) == [1] * cpu_threads.TRIALS + [2] * cpu_threads.TRIALS
    assert tuner.choice == {ThreadTuner.bucket(32): 1}
    with tuner.step(40):                     # same bucket (32-63): decided, no more trials
        assert torch.get_num_threads() == 1
    with tuner.step(4096):                   # another bucket starts its own trials
        assert ThreadTuner.bucket(4096) not in tuner.choice


def test_single_core_machines_never_switch():
    tuner = ThreadTuner(1)
    with tuner.step(8):
        assert torch.get_num_threads() >= 1
    assert tuner.choice == {}
