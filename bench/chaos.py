"""Chaos bench: nothing lost, nothing twice, under crashes and a failing CRM.

    .venv/bin/python bench/chaos.py [--leads 5000] [--rate 120] [--workers 3]
                                    [--kill-every 3] [--faults 0.2] [--database-url URL]
                                    [--faults-off-for-drain]

5,000 leads are posted from three webform sources (a provider-like client that retries
until it gets a 2xx) while a worker process is SIGKILLed every few seconds, the api
process is killed and restarted once, Redis is restarted once, and the fake amoCRM
answers 500, 429 or times out (before or after creating the deal) on 20% of calls, the
whole time: the faults stay on while the bench waits until everything is delivered
(``--faults-off-for-drain`` lets the CRM recover first, as the first version did). It prints
the counts: accepted leads, deals in the CRM, leads missing or duplicated there, dead
deliveries, and whether the ledger balances. Exit code 0 only when all of them hold.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hub.testing.chaos import run_chaos  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=120.0, help="leads posted per second")
    ap.add_argument("--workers", type=int, default=3, help="worker processes")
    ap.add_argument("--kill-every", type=float, default=3.0, help="seconds between worker kills")
    ap.add_argument("--faults", type=float, default=0.2, help="share of CRM calls that fail")
    ap.add_argument("--database-url", default="", help="PostgreSQL URL; default SQLite")
    ap.add_argument("--faults-off-for-drain", action="store_true",
                    help="let the CRM recover before the final drain")
    args = ap.parse_args(argv)
    console = Console()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="leadhub-chaos-") as tmp:
        report = run_chaos(
            Path(tmp), leads=args.leads, rate=args.rate, workers=args.workers,
            kill_every_s=args.kill_every, fault_ratio=args.faults,
            database_url=args.database_url, log=console.print,
            faults_through_drain=not args.faults_off_for_drain,
        )
    table = Table(title=f"Chaos run ({'PostgreSQL' if args.database_url else 'SQLite'}), "
                        f"{time.monotonic() - started:.0f} s")
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [
        ("leads posted", report.posted), ("leads accepted (2xx)", report.accepted),
        ("client retries (api down, errors)", report.client_retries),
        ("worker processes SIGKILLed", report.worker_kills), ("api kill+restart", report.api_restarts),
        ("redis restarts", report.redis_restarts), ("CRM requests", report.crm_requests),
        ("CRM faults injected", report.crm_faults), ("accepted leads in the CRM", report.in_crm),
        ("missing from the CRM", report.missing), ("duplicated in the CRM", report.duplicated),
        ("dead deliveries", report.dead), ("ledger balanced", "yes" if report.ledger_balanced else "NO"),
        (("seconds to drain after posting ended (faults on)" if not args.faults_off_for_drain
          else "seconds to drain after the CRM recovered"), f"{report.drain_seconds:.0f}"),
    ]
    for what, n in rows:
        table.add_row(what, str(n))
    console.print(table)
    for note in report.notes:
        console.print(f"[yellow]{note}[/]")
    console.print("[green]OK[/]: 0 lost, 0 duplicated" if report.ok else "[red]FAILED[/]")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
