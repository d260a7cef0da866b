"""ExpressGate: when the api takes a committed group itself, and when it leaves it to the
queue (hub/engine/express.py). Time is passed in, so the load is simulated exactly."""

from __future__ import annotations

from hub.engine.express import ExpressGate


def test_a_lone_lead_on_an_idle_hub_goes_express() -> None:
    gate = ExpressGate()
    assert gate.admit(1, 0, now=100.0)


def test_a_steady_40_per_second_goes_express_every_time() -> None:
    gate = ExpressGate()
    taken = 0
    for k in range(400):  # 10 s at 40 leads/s, each group costing 5 ms of CPU
        now = 100.0 + k / 40
        if gate.admit(1, 0, now):
            taken += 1
            gate.done(0.005, now + 0.004)
    assert taken == 400


def test_full_load_goes_to_the_queue() -> None:
    """Groups of 20 every 10 ms (2,000 leads/s): after the first few, none goes express."""
    gate = ExpressGate()
    taken = [gate.admit(20, 0, 100.0 + k * 0.01) for k in range(200)]
    assert not any(taken)
    small = [gate.admit(2, 0, 102.0 + k * 0.001) for k in range(100)]  # small groups, same load
    assert not any(small)


def test_the_rate_decays_once_the_load_is_over() -> None:
    gate = ExpressGate()
    for k in range(300):
        gate.admit(10, 0, 100.0 + k * 0.01)  # 1,000 leads/s for 3 s
    assert not gate.admit(1, 0, 103.0)
    assert gate.admit(1, 0, 110.0)  # seven seconds later the hub is idle again


def test_a_group_too_big_or_too_much_waiting_goes_to_the_queue() -> None:
    gate = ExpressGate(max_leads=8)
    assert not gate.admit(9, 0, 100.0)
    assert not gate.admit(3, 6, 101.0)  # 6 handed over already, not yet taken up
    assert gate.admit(2, 6, 102.0)


def test_cpu_beyond_its_share_sends_groups_to_the_queue_until_it_is_paid_back() -> None:
    gate = ExpressGate(duty=0.5, slack_s=0.05)
    assert gate.admit(1, 0, 100.0)
    gate.done(0.2, 100.0)  # a group that took 200 ms of CPU (a slow enrichment, say)
    assert not gate.admit(1, 0, 100.1)
    assert gate.admit(1, 0, 100.4)  # (0.2 - 0.4 * 0.5) = 0: paid back


def test_nothing_committed_is_not_a_group() -> None:
    assert not ExpressGate().admit(0, 0, 100.0)
