"""The whole hub SIGKILLed mid-flight while the CRM fails one request in five, the whole
time: api, worker, scheduler and the embedded Redis die at once with deliveries in the
air (some of them "500 after the deal was created"), come back, and the faults never
stop. 200 leads must make exactly 200 deals in the faithful fake amoCRM, whose ``query``
searches field values as the real one does (never tags)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from hub.testing.chaos import TOKEN, Poster, chaos_config
from hub.testing.cluster import HubCluster, wait_until
from plugins.amocrm.testing import FakeAmoCRM

LEADS = 200


def test_hub_killed_mid_flight_with_faults_on_makes_exactly_one_deal_per_lead(
    tmp_path: Path, database_url: str,
) -> None:
    with FakeAmoCRM(token=TOKEN) as amo:
        config = tmp_path / "plugins.toml"
        config.write_text(chaos_config(amo.base_url), encoding="utf-8")
        hub = HubCluster(config, data_dir=tmp_path / "hub", database_url=database_url)
        try:
            hub.start(workers=1)
            amo.faults(0.2, ("500", "429", "timeout"), seed=11, after_ratio=0.5, hang_s=3)
            poster = Poster(hub, LEADS, rate=10.0, concurrency=4)  # small batches: many requests
            threads = poster.start()
            # mid-flight: half posted, deliveries under way (some deals made, some in the air)
            wait_until(lambda: len(poster.accepted) >= LEADS // 2, 60, 0.05, "half the leads posted")
            wait_until(lambda: len(amo.requests) >= 30, 60, 0.05, "deliveries under way")
            assert hub.embedded is not None and hub.embedded.process is not None
            for proc in [hub.api, hub.scheduler, *hub.workers]:
                assert proc is not None
                os.killpg(proc.pid, signal.SIGKILL)
            os.kill(hub.embedded.process.pid, signal.SIGKILL)
            for proc in [hub.api, hub.scheduler, *hub.workers]:
                assert proc is not None
                proc.wait(10)
            hub.embedded.process.wait(10)
            deals_at_kill = len(amo.leads)
            hub.workers.clear()
            hub.start(workers=1)  # Redis from its append-only file, then every process
            for th in threads:
                th.join(120)
            assert len(poster.accepted) == LEADS
            posted_at = time.monotonic()
            expected = set(poster.accepted.values())

            def all_delivered() -> bool:
                leads = hub.leads()
                return len(leads) == LEADS and all(x["status"] == "delivered" for x in leads)

            wait_until(all_delivered, 240, 0.5, "every accepted lead delivered, faults still on")
            last_lead_s = time.monotonic() - posted_at
            markers = amo.leads_by_marker("lh:")
            faults = sum(1 for r in amo.requests if r.fault)
            kinds = sorted({r.fault for r in amo.requests if r.fault})
            print(f"\n{LEADS} leads, {deals_at_kill} deals when the hub was killed, "
                  f"{faults} CRM faults ({', '.join(kinds)}) of {len(amo.requests)} requests; "
                  f"the last lead was "
                  f"delivered {last_lead_s:.1f} s after the last post")
            assert sorted(m.split(":")[1] for m in markers) == sorted(expected)
            doubles = {m: ids for m, ids in markers.items() if len(ids) != 1}
            assert doubles == {}, f"duplicated deals: {doubles}"
            assert len(amo.leads) == LEADS
            assert faults >= 5, "too few faults to show anything"
        finally:
            amo.no_faults()
            hub.stop()
