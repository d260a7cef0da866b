"""Manager assignment across processes: round robin stays even over two worker processes
and a worker killed and restarted in the middle; weighted and sticky behave."""

from __future__ import annotations

from collections import Counter

from hub.engine.routing import weighted_sequence
from hub.testing.cluster import wait_until
from tests.conftest import ClusterFactory, ConfigWriter

CONFIG = """
[hub]
dedup_window_minutes = 0

[sources.site_form]
plugin = "webform"

[destinations.jsonl]
plugin = "file"

[[routes]]
name = "vip"
match = { "utm.source" = "vip" }
destinations = ["jsonl"]
assign = { strategy = "sticky", managers = ["7", "8"] }

[[routes]]
name = "all"
match = { source = "*" }
destinations = ["jsonl"]
assign = { strategy = "round_robin", managers = ["1001", "1002", "1003"] }
"""


def test_round_robin_even_across_two_workers_and_a_restart(
    write_config: ConfigWriter, make_cluster: ClusterFactory, database_url: str
) -> None:
    hub = make_cluster(write_config(CONFIG), database_url).start(workers=2)

    def post(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            r = hub.client.post("/hooks/site_form", data={"phone": f"+7916{i:07d}"})
            assert r.status_code == 200

    post(0, 150)
    hub.restart_worker(0)  # SIGKILL, possibly mid-batch
    post(150, 300)

    def assigned() -> list[str] | None:
        leads = hub.leads()
        done = [x["assigned_to"] for x in leads if x["status"] == "delivered"]
        return done if len(done) == 300 else None

    managers = wait_until(assigned, 120, 0.5, "300 leads routed and delivered")
    assert Counter(managers) == {"1001": 100, "1002": 100, "1003": 100}


def test_sticky_keeps_a_returning_contact_with_its_manager(
    write_config: ConfigWriter, make_cluster: ClusterFactory
) -> None:
    hub = make_cluster(write_config(CONFIG)).start(workers=1)
    phones = ["+79160000001", "+79160000002", "+79160000003"]
    for p in phones + phones:  # each contact comes back once
        assert hub.client.post("/hooks/site_form", data={"phone": p, "utm_source": "vip"}).status_code == 200

    def leads() -> list[dict[str, object]] | None:
        got = [x for x in hub.leads() if x["status"] == "delivered"]
        return got if len(got) == 6 else None

    got = wait_until(leads, 60, 0.3, "six leads delivered")
    by_phone: dict[str, set[object]] = {}
    for x in got:
        by_phone.setdefault(x["contact"]["phones"][0], set()).add(x["assigned_to"])  # type: ignore[index]
    assert all(len(m) == 1 for m in by_phone.values()), by_phone
    assert set().union(*by_phone.values()) == {"7", "8"}


def test_weighted_sequence_is_smooth() -> None:
    assert weighted_sequence({"a": 2, "b": 1}) == ["a", "b", "a"]
    seq = weighted_sequence({"a": 5, "b": 3, "c": 2}) * 10
    assert Counter(seq) == {"a": 50, "b": 30, "c": 20}
    assert "aaa" not in "".join(seq[:10])
