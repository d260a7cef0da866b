"""``leadhub``: the command line (Typer). Exit codes: 0 ok, 1 failure, 2 bad usage or config."""

from __future__ import annotations

import csv
import gc
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hub import __version__
from hub.errors import ConfigError

app = typer.Typer(help="LeadHub: webhooks in, normalized leads out, exactly once.",
                  no_args_is_help=True, add_completion=False)
plugin_app = typer.Typer(help="Plugin development helpers.", no_args_is_help=True)
app.add_typer(plugin_app, name="plugin")
console = Console()
err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="plugins.toml (else $LEADHUB_CONFIG, else ./plugins.toml)"),
]
HostOpt = Annotated[str, typer.Option(envvar="LEADHUB_HOST", help="Address to listen on.")]
PortOpt = Annotated[int, typer.Option(envvar="LEADHUB_PORT", help="Port to listen on.")]
#: ``leadhub serve``'s workers: how much lower their CPU priority is than the api's (nice)
WORKER_NICE = 10
#: ``leadhub api``'s processes at most, when not told (``default_api_processes``)
API_PROCESSES = 2
#: the garbage collector's thresholds in the long-running processes (``settle_gc``)
GC_THRESHOLDS = (10_000, 20, 20)


def settle_gc() -> None:
    """Before a long-running process starts serving: what it loaded to start (modules,
    plugins, the app, compiled statements) is frozen out of the collector's sight, and a
    young collection waits for 10,000 new objects instead of 700.

    Timed with ``gc.callbacks`` under ``leadhub serve``'s full load into the ``webhook``
    destination (two cores, 20,000 leads, from 8 s after start): the api ran 655 young
    collections, 60 middle and 5 full ones, 0.28 s in all, with each request in flight
    waiting through them; each worker 1.0-1.1 s. Frozen and with these thresholds: the api
    one young collection (3 ms), each worker 0.6-0.7 s (37 young ones, one middle, no full
    one). A request's garbage dies young (by reference count), so the api seldom gets to
    10,000; the workers' batches outlive a few young collections at 700 and were walked
    again in the middle generation every time. (Freezing alone, or a threshold of 2,000,
    left the workers at ~1 s.)
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]


def _fail_config(exc: ConfigError) -> typer.Exit:
    err.print(f"[bold red]{len(exc.problems)} problem(s) in the configuration:[/]")
    for p in exc.problems:
        err.print(f"  {p}", markup=False, highlight=False)
    return typer.Exit(2)


def _runtime(config: Path | None, start_redis: bool = True) -> Any:
    from hub.logs import configure_logging
    from hub.runtime import build_runtime

    configure_logging()
    try:
        return build_runtime(config, start_redis=start_redis)
    except ConfigError as exc:
        raise _fail_config(exc) from None


def _refuse_exposed_example_token(rt: Any, host: str) -> None:
    """``serve`` and ``api`` never listen beyond loopback with a guessable admin token
    (``hub/api/exposure.py``): exit 2 and say how to fix it."""
    from hub.api.exposure import exposure_problem

    problem = exposure_problem(host, rt.config.hub.admin_token.get_secret_value())
    if problem is not None:
        rt.close()
        err.print(problem, markup=False, highlight=False)
        raise typer.Exit(2)


def _export_config(config: Path | None) -> None:
    from hub.config import config_path

    os.environ["LEADHUB_CONFIG"] = str(config_path(config).resolve())


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@app.command()
def check(config: ConfigOpt = None) -> None:
    """Validate plugins.toml against every plugin's settings; print each problem."""
    from hub.config import load_config
    from hub.plugins import PluginError, discover, make_plugin_manager

    try:
        plugins = discover(make_plugin_manager())
        cfg = load_config(config, plugins)
    except ConfigError as exc:
        raise _fail_config(exc) from None
    except PluginError as exc:
        err.print(f"[red]plugin error:[/] {exc}")
        raise typer.Exit(2) from None
    console.print(
        f"[green]ok[/]: {len(cfg.sources)} source(s), {len(cfg.destinations)} destination(s), "
        f"{len(cfg.routes)} route(s)"
    )


@app.command("plugins")
def list_plugins(format: FormatOpt = Format.table) -> None:
    """List installed plugins (entry-point group `leadhub`)."""
    from hub.plugins import discover, make_plugin_manager

    infos = sorted(discover(make_plugin_manager()).values(), key=lambda p: p.id)
    rows = [p.listing() for p in infos]  # kinds and capabilities: lists in JSON, joined else
    if format is not Format.json:
        rows = [{k: ", ".join(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows]
    _print_rows(rows, format, "Plugins")


def _print_rows(rows: list[dict[str, Any]], format: Format, title: str) -> None:
    if format is Format.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    elif format is Format.csv:
        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(buf.getvalue(), end="")
    else:
        table = Table(title=title)
        for col in rows[0] if rows else ["(none)"]:
            table.add_column(col)
        for r in rows:
            table.add_row(*("" if v is None else str(v) for v in r.values()))
        console.print(table)


def uvicorn_options() -> dict[str, Any]:
    """How every uvicorn of the hub runs (and bench/ingest.py's bare endpoint, for a fair
    comparison): httptools and uvloop, dependencies of the hub, when importable (uvloop
    has no Windows build), else uvicorn's pure-Python h11 and asyncio."""
    import importlib

    def importable(name: str) -> bool:
        try:
            importlib.import_module(name)
        except ImportError:
            return False
        return True

    return {
        "http": "httptools" if importable("httptools") else "h11",
        "loop": "uvloop" if importable("uvloop") else "asyncio",
        "log_level": "warning",
        "access_log": False,
    }


@app.command()
def api(
    config: ConfigOpt = None,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    processes: Annotated[int | None, typer.Option(
        envvar="LEADHUB_API_PROCESSES", min=1, show_default=False,
        help="API processes sharing the port (one core each; they share only the store). "
             "Default: 2 where this process may use two cores or more, else 1.")] = None,
    fd: Annotated[int | None, typer.Option(hidden=True, help="Serve on this inherited socket.")] = None,
) -> None:
    """Run the HTTP API alone (scale-out: run workers and the scheduler apart)."""
    import uvicorn

    from hub.api.app import create_app

    _export_config(config)
    if processes is None:
        processes = default_api_processes()
    if processes > 1 and fd is None:
        _api_processes(config, host, port, processes)
        return
    rt = _runtime(config, start_redis=fd is None)
    if fd is None:
        _refuse_exposed_example_token(rt, host)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # see `serve`
    try:
        app = create_app(rt)
        settle_gc()
        if fd is None:
            uvicorn.run(app, host=host, port=port, **uvicorn_options())
        else:  # one of `--processes N`: the socket its parent bound
            import socket

            sock = socket.socket(fileno=fd)
            uvicorn.Server(uvicorn.Config(app, **uvicorn_options())).run(sockets=[sock])
    finally:
        rt.close()


def default_api_processes() -> int:
    """``leadhub api``'s processes when not told: one per core this process may use, at
    most ``API_PROCESSES``. One process uses one core (its Python runs one thread at a
    time); on SQLite the processes take turns at one write lock, so more than two were
    never measured to help. On two cores two gave 1.14-1.48x one (``bench/ingest.py
    --api-processes 1,2``, three runs)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(API_PROCESSES, cores or 1))


def _api_processes(config: Path | None, host: str, port: int, processes: int) -> None:
    """``leadhub api --processes N``: N api processes on one port, as N replicas behind a
    load balancer would be (they share nothing but the store and Redis), so the api uses
    more than the one core its Python can. This process binds the port, migrates the
    store, runs the embedded Redis if there is one, and keeps the N running (one that
    dies, even by SIGKILL, is started again; they die with it). Request counters are
    kept per process in a directory they share, so ``/metrics`` from any of them counts
    all (prometheus_client's multiprocess mode)."""
    import shutil
    import socket
    import tempfile

    rt = _runtime(config)
    _refuse_exposed_example_token(rt, host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        err.print(f"cannot listen on {host}:{port}: {exc}", markup=False)
        rt.close()
        raise typer.Exit(1) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    metrics_dir = tempfile.mkdtemp(prefix="leadhub-metrics-")
    env = {**os.environ, "LEADHUB_REDIS_URL": rt.redis_url, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    command = [sys.executable, "-m", "hub.cli", "api", "--config", os.environ["LEADHUB_CONFIG"],
               "--fd", str(sock.fileno())]
    sup = Supervisor([command] * processes, env, pass_fds=(sock.fileno(),))
    console.print(f"LeadHub {__version__} api on http://{host}:{port}, {processes} processes")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        sup.run()
    except KeyboardInterrupt:
        pass
    finally:
        sup.stopped.set()
        sup.finished.wait(15)
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        rt.close()


@app.command()
def worker(
    config: ConfigOpt = None,
    processes: Annotated[int, typer.Option(help="Worker processes (RQ WorkerPool).")] = 1,
    burst: Annotated[bool, typer.Option(help="Exit when the queues are empty.")] = False,
) -> None:
    """Run a worker: routing and delivery jobs from Redis."""
    from hub.worker import run_worker

    _export_config(config)
    rt = _runtime(config)
    url, cfg = rt.redis_url, rt.config
    os.environ.setdefault("LEADHUB_REDIS_URL", url)
    settle_gc()  # a pool's processes are forked from this one: frozen and set alike
    if processes <= 1:
        from hub.runtime import set_current

        set_current(rt)
        run_worker(url, cfg, processes=processes, burst=burst)
        return
    # The pool's processes build their own runtimes; this one only keeps the embedded
    # Redis it may have started alive until the pool ends (closing it here stopped that
    # Redis under the pool).
    embedded, rt.embedded_redis = rt.embedded_redis, None
    rt.close()
    try:
        run_worker(url, cfg, processes=processes, burst=burst)
    finally:
        if embedded is not None:
            embedded.stop()


@app.command()
def scheduler(config: ConfigOpt = None) -> None:
    """Run the scheduler: sweeps the store for due work every second."""
    from hub.worker import run_scheduler

    _export_config(config)
    run_scheduler(_runtime(config))


@app.command()
def serve(
    config: ConfigOpt = None,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes to run beside the API.")] = 2,
    worker_nice: Annotated[int, typer.Option(
        help="How much lower the workers' CPU priority is than the API's (Unix nice); "
             "0 keeps them equal.", min=0, max=19)] = WORKER_NICE,
) -> None:
    """API, workers and scheduler in one command, for one machine.

    Two workers by default: a worker runs one job at a time, and with one, a CRM call
    hanging until its timeout held up routing and every other destination (webhook → deal
    at 100 leads/s with 20 % amoCRM faults: p99 30 s with one worker, 13 s with two, 11 s
    with three). A third cost a fifth of the ingest rate under full load on two cores
    (``bench/ingest.py --serve``: 33 % of the bare endpoint with two, 28 % with three).

    The workers run at a lower CPU priority (``--worker-nice``, default 10): when the
    machine is short of CPU, the api answers and commits first and delivery catches up
    after, from the store. Nothing waits on an idle machine. Under full load into the
    ``webhook`` destination on two cores, the api's share went 1,072-1,176 → 1,603-2,166
    leads/s and its p99 91-97 → 48-91 ms, while 519-671 leads/s still reached the receiver
    during the load (648-719 before); into the file destination no change."""
    import uvicorn

    from hub.api.app import create_app
    from hub.worker import Scheduler

    _export_config(config)
    rt = _runtime(config)
    _refuse_exposed_example_token(rt, host)
    env = {**os.environ, "LEADHUB_REDIS_URL": rt.redis_url}
    sup = Supervisor(
        [[sys.executable, "-m", "hub.cli", "worker", "--config", os.environ["LEADHUB_CONFIG"]]
         for _ in range(max(1, workers))],
        env, nice=worker_nice,
    )
    sched = Scheduler(rt)
    threads = [threading.Thread(target=sched.run, daemon=True, name="scheduler"),
               threading.Thread(target=sup.run, daemon=True, name="supervisor")]
    for th in threads:
        th.start()

    def background_ok() -> str | None:
        if not sup.all_running():
            return "worker: not running"
        if time.time() - sched.last_sweep > 10:
            return "scheduler: no sweep in 10 s"
        return None

    console.print(f"LeadHub {__version__} on http://{host}:{port}  (data: {rt.data_dir})")
    try:
        # uvicorn re-raises SIGTERM after its graceful shutdown; make that an exit that runs
        # the cleanup below (stop the worker, the scheduler, the embedded Redis)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        app = create_app(rt, background_ok, express=True)
        settle_gc()
        uvicorn.run(app, host=host, port=port, **uvicorn_options())
    finally:
        sched.stop()
        sup.stop()
        rt.close()


def _in_child(death_signal: Callable[[], None] | None, nice: int) -> Callable[[], None] | None:
    """A ``preexec_fn``: the parent-death signal, then ``nice`` added to the child's nice
    value (where the system has one)."""
    if not nice or not hasattr(os, "nice"):
        return death_signal

    def prepare() -> None:
        if death_signal is not None:
            death_signal()
        os.nice(nice)

    return prepare


class Supervisor:
    """Keeps worker processes running: one that dies (even by SIGKILL) is started again.

    The workers die with this process however it ends (``hub.lifeline``): a lifeline pipe
    they watch, and on Linux a parent-death signal. That signal fires when the *thread*
    that forked them ends, so ``run`` (the thread that starts them) also stops and reaps
    them before it returns; ``stop`` asks it to and waits."""

    def __init__(self, commands: list[list[str]], env: dict[str, str],
                 pass_fds: tuple[int, ...] = (), nice: int = 0) -> None:
        self.commands = commands
        self.env = env
        self.pass_fds = pass_fds  # besides the lifeline: what every child inherits
        self.nice = nice  # added to each child's nice value (a lower CPU priority)
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * len(commands)
        self.stopped = threading.Event()
        self.finished = threading.Event()

    def all_running(self) -> bool:
        return all(p is not None and p.poll() is None for p in self.procs)

    def run(self) -> None:
        try:
            while not self.stopped.is_set():
                for i, cmd in enumerate(self.commands):
                    p = self.procs[i]
                    if p is None or p.poll() is not None:
                        self.procs[i] = self._spawn(cmd)
                self.stopped.wait(0.5)
        finally:
            self._stop_children()
            self.finished.set()

    def _spawn(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        from hub.lifeline import lifeline, parent_death_signal

        line = lifeline()
        return subprocess.Popen(cmd, env=line.child_env(self.env),
                                pass_fds=line.pass_fds + self.pass_fds,
                                preexec_fn=_in_child(parent_death_signal(signal.SIGKILL), self.nice))

    def _stop_children(self) -> None:
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.terminate()
        for p in self.procs:
            if p is not None:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def stop(self) -> None:
        self.stopped.set()
        self.finished.wait(15)


@app.command()
def leads(
    config: ConfigOpt = None,
    format: FormatOpt = Format.table,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
) -> None:
    """List recent leads from the store."""
    from hub.engine.leads import load_leads
    from hub.store import leads as lead_store

    rt = _runtime(config, start_redis=False)
    keep = lead_store.LeadFilter(source=source, status=status)
    with rt.reader.connect() as conn:
        items = load_leads(conn, lead_store.newest(conn, keep, limit))
    if format is Format.json:
        print(json.dumps([i.to_json_dict() for i in items], ensure_ascii=False, indent=2))
        return
    from hub.normalize.masking import mask_email, mask_phone

    rows = [
        {"id": i.id, "received": i.received_at.strftime("%Y-%m-%d %H:%M:%S"), "source": i.source,
         "name": i.contact.name, "phone": ", ".join(mask_phone(p) for p in i.contact.phones),
         "email": ", ".join(mask_email(e) for e in i.contact.emails),
         "utm_source": i.utm.source, "status": i.status,
         "deliveries": ", ".join(f"{d.destination}:{d.status}" for d in i.deliveries)}
        for i in items
    ]
    _print_rows(rows, format, "Leads")


@app.command()
def ledger(
    config: ConfigOpt = None,
    format: FormatOpt = Format.table,
    since: Annotated[str | None, typer.Option(help="ISO time or Unix seconds")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time or Unix seconds")] = None,
) -> None:
    """Count every accepted event: leads, duplicates, non-leads, quarantine, deliveries."""
    from hub.api.admin import parse_time
    from hub.api.errors import ApiError
    from hub.engine.ledger import ledger as compute

    rt = _runtime(config, start_redis=False)
    try:
        doc = compute(rt.reader, parse_time(since, "since"), parse_time(until, "until"))
    except ApiError as exc:
        err.print(exc.message)
        raise typer.Exit(2) from None
    doc["since"], doc["until"] = since, until
    if format is Format.json:
        print(json.dumps(doc, indent=2))
        return
    rows = [{"source": name, **counts} for name, counts in sorted(doc["by_source"].items())]
    rows.append({"source": "TOTAL", **doc["totals"]})
    _print_rows(rows, format, "Ledger" + ("" if doc["balanced"] else " (NOT BALANCED)"))
    if not doc["balanced"]:
        raise typer.Exit(1)


@app.command()
def reconcile(
    job: Annotated[str, typer.Argument(help="The [reconcile.NAME] job to run")],
    config: ConfigOpt = None,
    format: FormatOpt = Format.table,
) -> None:
    """Run a reconcile job now, in this process, against the hub's store: read payments and
    won deals, match them, store the flags; print the run and the flags it saw. Exit 0 when
    it ran (whatever it flagged), 1 when it failed, 2 for an unknown job."""
    from rich.progress import Progress

    from hub.reconcile.run import ReconcileError, job_of, run_job

    rt = _runtime(config)
    try:
        job_of(rt, job)
    except ReconcileError as exc:
        err.print(str(exc))
        raise typer.Exit(2) from None
    try:
        if err.is_terminal:
            with Progress(console=err, transient=True) as bar:
                task = bar.add_task(job, total=1.0)
                doc = run_job(rt, job, progress=lambda share, what: bar.update(
                    task, completed=share, description=what))
        else:
            doc = run_job(rt, job)
    except Exception as exc:
        err.print(f"reconcile {job} failed: {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None
    finally:
        rt.close()
    if format is Format.json:
        print(json.dumps(doc, ensure_ascii=False, indent=2, default=str))
        return
    rows = [_flag_row(f) for f in doc["flags"]]
    if format is Format.csv:
        _print_rows(rows, format, "")
        return
    run = doc["run"]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(run["counts"].items()))
    console.print(f"run {run['id']} of {run['job']}: {run['status']} ({counts})")
    _print_rows(rows, format, f"Flags seen by this run ({len(rows)})")


def _flag_row(flag: dict[str, Any]) -> dict[str, Any]:
    """A flag as one table or CSV row: who, on which side, and the sums."""
    acc, crm = flag["accounting"] or {}, flag["crm"] or {}
    return {
        "id": flag["id"], "kind": flag["kind"], "state": flag["state"],
        "accounting": ", ".join(acc.get("names") or acc.get("client_keys") or []),
        "accounting_amount": acc.get("amount"),
        "crm": ", ".join(crm.get("names") or crm.get("client_keys") or []),
        "crm_amount": crm.get("amount"),
        "phones": ", ".join(sorted(set(acc.get("phones", [])) | set(crm.get("phones", [])))),
        "inn": acc.get("inn") or crm.get("inn"),
    }


@app.command()
def replay(lead_id: str, config: ConfigOpt = None) -> None:
    """Re-route and re-deliver one lead (idempotent per destination)."""
    from hub.engine.leads import get_lead
    from hub.engine.replay import replay_lead

    rt = _runtime(config)
    if not replay_lead(rt, lead_id):
        err.print(f"no lead {lead_id}")
        raise typer.Exit(1)
    lead = get_lead(rt, lead_id)
    assert lead is not None
    console.print(f"{lead_id}: " + ", ".join(f"{d.destination}:{d.status}" for d in lead.deliveries))


@app.command()
def erase(
    config: ConfigOpt = None,
    phone: Annotated[list[str] | None, typer.Option(
        "--phone", help="A phone number, written any way (repeatable).")] = None,
    email: Annotated[list[str] | None, typer.Option(
        "--email", help="An e-mail address (repeatable).")] = None,
    format: FormatOpt = Format.table,
) -> None:
    """Remove a person from the store; print the destinations that hold copies."""
    from hub.engine.erasure import ErasureError
    from hub.engine.erasure import erase as erase_person

    rt = _runtime(config, start_redis=False)
    try:
        report = erase_person(rt, phone or [], email or [])
    except ErasureError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    finally:
        rt.close()
    doc = report.to_json()
    if format is Format.json:
        print(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    deleted = [{"table": name, "rows": n} for name, n in sorted(doc["deleted"].items()) if n]
    _print_rows(deleted or [{"table": "(nothing found)", "rows": 0}], format, "Erased")
    if doc["copies"]:
        _print_rows(doc["copies"], format, "Copies delivered to destinations")
    held = doc["destinations_holding_copies"]
    err.print("destinations that hold copies (remove them there): " + (", ".join(held) or "none"),
              markup=False)


class PluginKind(str, Enum):
    source = "source"
    destination = "destination"


@plugin_app.command("new")
def plugin_new(
    name: Annotated[str, typer.Argument(help="Plugin id (entry-point name), e.g. acme_crm.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to create leadhub-NAME/.")] = Path("."),
    kind: Annotated[PluginKind, typer.Option(help="source or destination")] = PluginKind.destination,
) -> None:
    """Scaffold a plugin package: entry point, connector with its Config, README, a passing test."""
    from hub.scaffold import ScaffoldError, create_plugin

    try:
        root = create_plugin(name, directory, "source" if kind is PluginKind.source else "destination")
    except ScaffoldError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    typer.echo(f"created {root}")
    typer.echo(f"next: pip install -e '{root}[test]' && pytest {root}")


def main() -> None:
    from hub.lifeline import watch_lifeline

    watch_lifeline()  # started by `serve`: end with it, even if killed by SIGKILL
    app()


if __name__ == "__main__":
    main()
