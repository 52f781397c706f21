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
    with tuner.step(100):                    # another bucket starts its own trials
        assert ThreadTuner.bucket(100) not in tuner.choice


def test_long_steps_take_every_thread_without_a_trial(monkeypatch):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n))
    seen = []
    tuner = ThreadTuner(2)
    for n in (cpu_threads.ALL_THREADS_FROM, 2048, 4096):
        with tuner.step(n):
            pass
    assert seen[::2] == [2, 2, 2]
    assert all(tuner.choice[ThreadTuner.bucket(n)] == 2 for n in (256, 2048, 4096))


def test_single_core_machines_never_switch():
    tuner = ThreadTuner(1)
    with tuner.step(8):
        assert torch.get_num_threads() >= 1
    assert tuner.choice == {}
