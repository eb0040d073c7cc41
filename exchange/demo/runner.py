"""`exchange demo`: start a federation on 127.0.0.1 (hub processes in a ring, a medallion CERT, a member's webhook
receiver), replay the worm scenario through it, show what happens, check what must hold, and stop everything.

Only the wiring is here: the federation's shape is topology.py, the story scenario.py, the processes
processes.py, what the demo watches watch.py, what it says narrate.py, the end summary.py.
"""

import asyncio
import contextlib
import functools
import importlib.util
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson

from exchange.demo import medallion
from exchange.demo.narrate import show_access, show_delivery, show_event, show_report
from exchange.demo.processes import Child, Children, alive, wait_ready
from exchange.demo.progress import Progress, make_progress
from exchange.demo.receiver import Receiver
from exchange.demo.replay import Expectations, Prepared, post, prepare
from exchange.demo.scenario import Step, steps
from exchange.demo.summary import (
    SUMMARY_COLUMNS,
    alert_ext,
    build_summary,
    contains_red,
    run_checks,
    summary_rows,
)
from exchange.demo.topology import (
    ALERTS,
    INBOX,
    INDICATORS,
    LEVELS,
    MEDALLION_LOGIN,
    OPERATOR,
    WEBHOOK_SECRET,
    HubSpec,
    MedallionSpec,
    MemberSpec,
    Topology,
    demo_passwords,
    write_configs,
)
from exchange.demo.watch import Watcher, read_collection
from exchange.errors import ConfigError, ExchangeError
from exchange.model.timestamps import now_micros
from exchange.policy.credentials import hash_password

# Ring order: each hub pulls the canonical indicators of the next (CERT-ES pulls CERT-DE).
HUBS = (("CERT-DE", "DE"), ("CERT-FR", "FR"), ("CERT-PL", "PL"), ("CERT-ES", "ES"))
MEDALLION_CERT = ("CERT-NL", "NL")
MEDALLION_HUB = "CERT-DE"  # pulls from and pushes to medallion
MEMBER_NAME, MEMBER_HUB = "Example Bank", "CERT-FR"
STEP_TIMEOUT = 30.0  # seconds for a step's reports to reach every hub and its alert version the member
SETTLE = 1.0  # seconds of quiet after the last step: a late delivery or alert version would show in it
START_TIMEOUT = 60.0


class DemoFailed(ExchangeError):
    """The federation did not do what the scenario expects within its time; the message says what."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    directory: Path | None = None  # None: a temporary directory, removed at the end
    json: bool = False
    keep_running: bool = False


def plan(workdir: Path, webhook_url: str) -> Topology:
    hubs = tuple(HubSpec(name, country, medallion.free_port(), workdir / name.lower()) for name, country in HUBS)
    cert = MedallionSpec(MEDALLION_CERT[0], MEDALLION_CERT[1], medallion.free_port(),
                         workdir / f"{MEDALLION_CERT[0].lower()}-medallion")
    return Topology(hubs=hubs, medallion=cert, medallion_hub=MEDALLION_HUB,
                    member=MemberSpec(MEMBER_NAME, MEMBER_HUB, webhook_url))


def run_demo(options: DemoOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """0 when every check passed, 1 when one failed or the federation got stuck, 130 on Ctrl-C, 143 on SIGTERM.
    Every process it started is stopped before it returns."""
    if importlib.util.find_spec("medallion") is None:
        raise ConfigError("exchange demo runs medallion, which is not installed: pip install 'exchange[demo]' "
                          "(or run `python3 run.py demo`)")
    workdir, temporary = _workdir(options.directory)
    started = time.monotonic()
    progress = make_progress(err if options.json else out, started)
    summary: dict[str, Any] = {}
    code = 0
    try:
        with Children() as children:
            try:
                summary = asyncio.run(_run(options, workdir, children, progress, started, out))
            except ExchangeError as exc:  # stuck (DemoFailed), a hub refused a report, a process did not start
                progress.event(f"FAILED: {exc}", style="bold red")
                code = 1
            except KeyboardInterrupt:  # Ctrl-C
                code = 130
            except asyncio.CancelledError:  # SIGTERM: cleaned up like Ctrl-C
                code = 143
            pids = {c.name: c.pid for c in children.children}
        left = sorted(pid for pid in pids.values() if alive(pid))
        progress.event(f"stopped {len(pids)} processes" + (f"; still alive: {left}" if left else ""))
        if summary:
            summary["processes"] = {"pids": sorted(pids.values()), "alive_after_stop": left}
            code = code or (0 if summary["ok"] and not left else 1)
            if options.json and not options.keep_running:
                out.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
                out.flush()
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


def _workdir(directory: Path | None) -> tuple[Path, bool]:
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="exchange-demo-")), True
    if directory.exists() and any(directory.iterdir()):
        # A hub restarted on old data would replay an old story: the demo wants a clean slate.
        raise ConfigError(f"--dir {directory} is not empty; give a new or empty directory")
    directory.mkdir(parents=True, exist_ok=True)
    return directory.resolve(), False


async def _run(options: DemoOptions, workdir: Path, children: Children, progress: Progress, started: float,
               out: TextIO) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    receiver = Receiver(WEBHOOK_SECRET)
    try:
        topology = plan(workdir, await receiver.start())
        receiver.on_delivery = lambda entry: show_delivery(progress, topology, entry)
        return await _federation(options, topology, receiver, children, progress, started, out)
    finally:
        await receiver.stop()
        loop.remove_signal_handler(signal.SIGTERM)


async def _federation(options: DemoOptions, topology: Topology, receiver: Receiver, children: Children,
                      progress: Progress, started: float, out: TextIO) -> dict[str, Any]:
    now = now_micros()
    scenario = steps(now, topology.medallion.name)
    progress.heading(f"Starting {len(topology.hubs)} national CERT hubs, {topology.medallion.name} on medallion, "
                     f"and {topology.member.name}'s webhook receiver (in {topology.hubs[0].directory.parent})")
    # The reports are converted (misp-stix alone takes seconds to import) while the processes start.
    prepared_task = asyncio.create_task(asyncio.to_thread(_prepare_all, scenario, now), name="demo-prepare")
    try:
        hashes = await asyncio.to_thread(lambda: {pw: hash_password(pw) for pw in demo_passwords()})
        write_configs(topology, hashes)
        pids = _spawn(topology, children)
        async with aiohttp.ClientSession() as session:
            await _wait_started(session, topology, children, progress)
            prepared = await prepared_task
            startup = time.monotonic() - started
            watcher = Watcher(session, topology, lambda event: show_event(progress, topology, event))
            watching = asyncio.create_task(watcher.run(), name="demo-watcher")
            try:
                # rich redraws from its own thread: it only reads the views, which the watcher replaces whole.
                with progress.live(lambda: ("Federation", SUMMARY_COLUMNS, summary_rows(topology, watcher.views))):
                    expectations, step_times = await _replay(session, topology, scenario, prepared, watcher,
                                                             receiver, progress)
                    await _wait_medallion_push(topology, watcher)
                    await asyncio.sleep(SETTLE)
                    await watcher.poll()
                summary = await _finish(session, topology, watcher, receiver, expectations, progress, pids,
                                        {"startup_seconds": round(startup, 2), "steps_seconds": step_times,
                                         "total_seconds": round(time.monotonic() - started, 2)})
                if options.keep_running:
                    if options.json:
                        out.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
                        out.flush()
                    show_access(progress, topology)
                    await asyncio.Event().wait()  # until Ctrl-C or SIGTERM cancels the demo
                return summary
            finally:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
    finally:
        if not prepared_task.done():
            prepared_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await prepared_task


def _prepare_all(scenario: tuple[Step, ...], now: int) -> list[list[Prepared]]:
    return [[prepare(report, now) for report in step.reports] for step in scenario]


def _spawn(topology: Topology, children: Children) -> dict[str, int]:
    med = topology.medallion
    med.directory.mkdir(parents=True, exist_ok=True)
    config = medallion.write_files(med.directory, med.port, title=f"{med.name} reference TAXII server",
                                   collection_title=f"{med.name} indicators", user=MEDALLION_LOGIN[0],
                                   password=MEDALLION_LOGIN[1])
    started = [children.spawn(med.name, medallion.command(config, med.port), log_path=med.directory / "medallion.log",
                              cwd=med.directory)]
    for hub in topology.hubs:
        started.append(children.spawn(
            hub.name, [sys.executable, "-m", "exchange", "serve", "--config", str(hub.config_path),
                       "--log-level", "warning"], log_path=hub.log_path, env=topology.env(), cwd=hub.directory))
    return {c.name: c.pid for c in started}


async def _wait_started(session: aiohttp.ClientSession, topology: Topology, children: Children,
                        progress: Progress) -> None:
    by_name: dict[str, Child] = {c.name: c for c in children.children}

    async def ready(name: str, url: str, auth: aiohttp.BasicAuth, what: str) -> None:
        seconds = await wait_ready(session, by_name[name], url, auth, within=START_TIMEOUT)
        progress.event(f"{what} ready at {url} in {seconds:.1f} s (pid {by_name[name].pid})", style="green")

    med = topology.medallion
    await asyncio.gather(
        ready(med.name, med.discovery, aiohttp.BasicAuth(*MEDALLION_LOGIN), f"{med.name} ({med.country}, medallion)"),
        *(ready(h.name, f"{h.base}/taxii2/", aiohttp.BasicAuth(*OPERATOR), f"{h.name} ({h.country})")
          for h in topology.hubs))
    ring = " <- ".join(h.name for h in (*topology.hubs, topology.hubs[0]))
    progress.event(f"ring (each pulls the next one's canonical indicators): {ring}; {topology.medallion_hub} pulls "
                   f"from and pushes to {med.name}; {topology.member.name} subscribes at {topology.member.hub}")


async def _replay(session: aiohttp.ClientSession, topology: Topology, scenario: tuple[Step, ...],
                  prepared: list[list[Prepared]], watcher: Watcher, receiver: Receiver,
                  progress: Progress) -> tuple[Expectations, list[float]]:
    expectations = Expectations()
    times = []
    for number, (step, reports) in enumerate(zip(scenario, prepared, strict=True), start=1):
        progress.heading(f"Step {number}/{len(scenario)}: {step.title}")
        began = time.monotonic()
        repeated: list[str] = []
        for item in reports:
            show_report(progress, item)
            posted = await post(session, topology, item)
            progress.event(f"  {posted.target} accepted it: {posted.succeeded} stored, {posted.failed} failed"
                           + "".join(f"\n    {f}" for f in posted.failures[:5]))
            repeated += expectations.add(item)
        settled = functools.partial(_converged, watcher, expectations, step, receiver)
        if not await watcher.until(settled, within=STEP_TIMEOUT):
            raise DemoFailed(f"step {number} ({step.title}) did not settle within {STEP_TIMEOUT:.0f} s: "
                             + _lag(watcher, expectations, step, receiver))
        times.append(round(time.monotonic() - began, 2))
        for ident in dict.fromkeys(repeated):
            countries = ", ".join(sorted(expectations.countries[ident]))
            progress.event(f"deduplicated: {expectations.patterns[ident]} is one canonical indicator at every hub, "
                           f"reported from {countries}", style="cyan")
        progress.event(f"every hub has it ({times[-1]:.1f} s)", style="green")
    return expectations, times


def _alert_due(step: Step) -> bool:
    return len(step.spread) >= LEVELS[0][1]


def _converged(watcher: Watcher, expectations: Expectations, step: Step, receiver: Receiver) -> bool:
    for view in watcher.views.values():
        for ident, countries in expectations.countries.items():
            got = view.indicators.get(ident)
            if got is None or not countries <= got.countries:
                return False
        if _alert_due(step) and not any(sorted(r.get("countries") or ()) == list(step.spread)
                                        for r in view.alerts.values()):
            return False
    return not _alert_due(step) or any(alert_ext(d.alert).get("countries") == list(step.spread)
                                       for d in receiver.deliveries)


def _lag(watcher: Watcher, expectations: Expectations, step: Step, receiver: Receiver) -> str:
    missing = []
    for name, view in watcher.views.items():
        for ident, countries in expectations.countries.items():
            got = view.indicators.get(ident)
            have = set() if got is None else got.countries
            if not countries <= have:
                missing.append(f"{name} lacks {sorted(countries - have)} on {expectations.patterns[ident]}")
        if view.error:
            missing.append(f"{name}: {view.error}")
        if _alert_due(step):
            missing.append(f"{name} alerts: {[(r['level'], r.get('countries')) for r in view.alerts.values()]}")
    missing.append(f"member deliveries: {[alert_ext(d.alert).get('countries') for d in receiver.deliveries]}")
    return "; ".join(missing)


async def _wait_medallion_push(topology: Topology, watcher: Watcher) -> None:
    """Until medallion holds the canonical indicators its peer hub pushes (best effort: the summary says)."""
    hub = topology.hub(topology.medallion_hub)

    def pushed() -> bool:
        held = {o.get("id") for o in watcher.medallion_objects or () if o.get("created_by_ref") == hub.identity}
        return set(watcher.views[hub.name].indicators) <= held

    await watcher.until(pushed, within=10)


async def _red_held_by(session: aiohttp.ClientSession, topology: Topology) -> list[str]:
    """The hubs any of whose collections holds the TLP:RED sample, read as each hub's operator (who sees all)."""
    holders = []
    auth = aiohttp.BasicAuth(*OPERATOR)
    for hub in topology.hubs:
        objects = []
        for collection in (INBOX, INDICATORS, ALERTS):
            objects += await read_collection(session, hub.collection_url(collection), auth, {"match[version]": "all"})
        if contains_red(objects):
            holders.append(hub.name)
    return holders


async def _finish(session: aiohttp.ClientSession, topology: Topology, watcher: Watcher, receiver: Receiver,
                  expectations: Expectations, progress: Progress, pids: dict[str, int],
                  timings: dict[str, Any]) -> dict[str, Any]:
    red_held_by = await _red_held_by(session, topology)
    medallion_objects = watcher.medallion_objects or []
    checks = run_checks(topology, watcher.views, receiver.deliveries, expectations, red_held_by, medallion_objects)
    summary = build_summary(topology, watcher.views, receiver.deliveries, expectations, checks, pids=pids,
                            medallion_objects=medallion_objects, red_held_by=red_held_by, timings=timings)
    progress.heading("Summary")
    progress.table("Hubs", SUMMARY_COLUMNS, summary_rows(topology, watcher.views))
    progress.table(f"{topology.member.name}'s webhook deliveries (at {topology.member.hub})",
                   ("#", "alert version", "level", "countries", "idempotency key", "attempt"),
                   [[d["event_id"], str(d["version"]), f"{d['level']} {d['level_name']}", ", ".join(d["countries"]),
                     d["idempotency_key"], d["attempt"]] for d in summary["member"]["deliveries"]])
    med = summary["medallion"]
    progress.event(f"{med['name']} (medallion) holds {med['objects']} objects, {med['pushed_by_hub']} of them "
                   f"canonical indicators pushed by {topology.medallion_hub}")
    for check in checks:
        progress.event(f"{'PASS' if check.passed else 'FAIL'}  {check.name}: {check.detail}",
                       style="green" if check.passed else "bold red")
    progress.event(f"scenario replayed in {timings['total_seconds']:.1f} s "
                   f"(startup {timings['startup_seconds']:.1f} s)")
    return summary
