"""The `exchange` command: wiring only; each subcommand calls into the stage that owns the work.

Exit codes: 0 success, 1 the command ran and found a problem (e.g. a broken audit chain),
2 usage or configuration error.
"""

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

from exchange import __version__
from exchange.errors import ConfigError, TransientError
from exchange.taxii.client import TaxiiClientError

DEFAULT_CONFIG = Path("examples/hub.toml")


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from exchange.config import load_settings

    settings = load_settings(Path(args.config))
    return settings.with_overrides(host=getattr(args, "host", None), port=getattr(args, "port", None),
                                   data_dir=Path(args.data_dir).resolve() if args.data_dir else None)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0-65535")
    return port


def cmd_serve(args: argparse.Namespace) -> int:
    from exchange.app import serve
    from exchange.observe.logs import configure_logging

    settings = _settings(args)
    configure_logging(args.log_level, args.log_format or settings.hub.log_format)
    asyncio.run(serve(settings))
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    import os

    from exchange.config import load_settings
    from exchange.config_peers import missing_secrets

    settings = load_settings(Path(args.file))
    colls = sum(len(r.collections) for r in settings.api_roots)
    peers = f", {len(settings.peers)} peer(s)" if settings.peers else ""
    print(f"{args.file}: ok ({len(settings.api_roots)} API root(s), {colls} collection(s), "
          f"{len(settings.accounts)} account(s){peers})")
    from exchange.dedup.merge import HubIdentity

    # Peer hubs put this in their [[peers]] entry for us (identity = ...), so they never echo our claims back.
    print(f"hub identity: {HubIdentity(settings.hub.identity_name).id} ({settings.hub.identity_name})")
    # Secrets may live only on the production host, so a missing one is a warning here and an error at serve.
    for peer in settings.peers:
        for name in missing_secrets(peer, os.environ):
            print(f"warning: peer {peer.id!r} needs the environment variable {name}, which is not set here; "
                  "`exchange serve` will refuse to start without it", file=sys.stderr)
    return 0


def cmd_peers(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    import orjson

    from exchange.fanout.push import format_push_health, push_health
    from exchange.ingest.journal import read_peer_sync
    from exchange.ingest.peers import format_health, peer_health
    from exchange.model.timestamps import now_micros

    settings = _settings(args)
    now = now_micros()
    health = peer_health(settings.peers, read_peer_sync(settings.hub.data_dir / "journal.db"), now)
    pushes = push_health(settings.peers, settings.hub.data_dir / "outbound.db")
    if args.json:
        print(orjson.dumps([{"direction": "pull", **asdict(h)} for h in health]
                           + [{"direction": "push", **asdict(p)} for p in pushes]).decode())
    else:
        print(format_health(health, now))
        if pushes:
            print("\n" + format_push_health(pushes, now))
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    import orjson

    from exchange.fanout.alerting import read_alert_rows
    from exchange.fanout.routes import alert_summary

    settings = _settings(args)
    rows = [alert_summary(r) for r in read_alert_rows(settings.hub.data_dir / "alerts.db")]
    if args.json:
        print(orjson.dumps(rows).decode())
    elif not rows:
        print("no alerts" + ("" if settings.hub.alerts_collection else " (hub.alerts_collection is not set)"))
    for r in [] if args.json else rows:
        print(f"{r['id']}  level {r['level']} {r['level_name']}  {r['status']}\n  {r['name']}\n"
              f"  countries: {', '.join(r['countries'])}  "
              f"sources: {r['source_count']}  indicators: {r['indicators']}\n"
              f"  first seen: {r['first_seen']}  last seen: {r['last_seen']}  version: {r['modified']}")
    return 0


def cmd_deliveries(args: argparse.Namespace) -> int:
    import asyncio
    from dataclasses import asdict

    import orjson

    from exchange.fanout.queue import DeliveryQueue
    from exchange.fanout.routes import delivery_summary

    settings = _settings(args)

    async def run() -> object:
        queue = DeliveryQueue(settings.hub.data_dir / "deliveries.db")
        await queue.start()
        try:
            if args.replay is not None:
                replayed = await queue.replay(args.replay)
                return {"replayed": delivery_summary(replayed) if replayed else None}
            if args.dead:
                return {"dead": [delivery_summary(d) for d in await queue.dead_letters(limit=1000)]}
            return {"queues": [asdict(s) for s in await queue.stats()]}
        finally:
            await queue.close()

    result = asyncio.run(run())
    assert isinstance(result, dict)
    if args.json:
        print(orjson.dumps(result).decode())
        return 0
    if "replayed" in result:
        if result["replayed"] is None:
            print(f"exchange: no dead letter {args.replay}", file=sys.stderr)
            return 1
        print(f"replayed delivery {args.replay}")
    for d in result.get("dead", []):
        print(f"{d['id']}  {d['subscription_id']}  {d['alert_id']} {d['version']}  attempts={d.get('attempts')}  "
              f"last error: {d.get('last_error')}")
    for q in result.get("queues", []):
        print(f"{q['subscription_id']}: pending={q['pending']} delivered={q['delivered']} dead={q['dead']}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from exchange.audit.log import verify_chain

    path = _settings(args).hub.data_dir / "audit.db"
    if not path.exists():
        raise ConfigError(f"no audit log at {path}")
    report = verify_chain(path)
    if report.broken_at is None:
        print(f"audit log {path}: {report.entries} entries, chain intact")
        return 0
    print(f"audit log {path}: chain BROKEN at entry {report.broken_at}: {report.reason} "
          f"({report.entries} entries verified before it)")
    return 1


def cmd_hash_password(args: argparse.Namespace) -> int:
    from exchange.policy.credentials import hash_password

    password = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("password: ")
    if not password:
        raise ConfigError("empty password")
    print(hash_password(password))
    return 0


def cmd_new_token(args: argparse.Namespace) -> int:
    from exchange.policy.credentials import hash_token, new_token

    token = new_token()
    print(f"token (give to the client, shown once): {token}")
    print(f"token_hashes entry (put in the config):  {hash_token(token)}")
    return 0


FORMATS = ["auto", "stix21", "stix20", "stix1", "misp", "csv", "text"]


def cmd_normalize(args: argparse.Namespace) -> int:
    import orjson

    from exchange.dedup.claims import Source
    from exchange.dedup.merge import HubIdentity
    from exchange.dedup.offline import bundle, deduplicate
    from exchange.normalize.formats.detect import read_file

    batches, rejects, notes = [], [], []
    for name in args.files:
        try:
            result = read_file(name, args.format)
        except OSError as exc:
            raise ConfigError(f"cannot read {name}: {exc.strerror}") from None
        rejects += [(r.where, r.message) for r in result.rejects]
        notes += [(r.where, r.message) for r in result.notes]
        batches.append((Source(name=name), result.objects))
    merged = deduplicate(batches, hub=HubIdentity(args.identity), warn=_warninglists())
    rejects += merged.rejects
    sys.stdout.buffer.write(orjson.dumps(bundle(merged.objects), option=orjson.OPT_INDENT_2) + b"\n")
    for where, message in notes:
        print(f"{where}: note: {message}", file=sys.stderr)
    for where, message in rejects:
        print(f"{where}: rejected: {message}", file=sys.stderr)
    return 1 if rejects else 0


def _warninglists():  # type: ignore[no-untyped-def]
    try:
        from exchange.normalize.warninglists import default_warninglists

        return default_warninglists().match
    except Exception:  # flagging is best effort offline: no data, no flags
        return None


def cmd_ingest(args: argparse.Namespace) -> int:
    import os

    from exchange.ingest.files import ingest_files
    from exchange.taxii.client import Credentials

    password = os.environ.get("EXCHANGE_PASSWORD") if args.user else None
    if args.user and password is None:
        password = getpass.getpass(f"password for {args.user}: ")
    credentials = Credentials(username=args.user, password=password, token=os.environ.get("EXCHANGE_TOKEN"))
    paths = [Path(f) for f in args.files]
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"no such file: {path}")
    report = asyncio.run(ingest_files(paths, args.hub, credentials, fmt=args.format))
    for where, message in report.notes:
        print(f"{where}: note: {message}", file=sys.stderr)
    for where, message in report.rejects:
        print(f"{where}: rejected: {message}", file=sys.stderr)
    for ident, message in report.failures:
        print(f"{ident}: failed at the hub: {message}", file=sys.stderr)
    print(f"posted {report.posted} object(s) in {report.envelopes} envelope(s): {report.succeeded} succeeded, "
          f"{report.failed} failed, {len(report.rejects)} rejected before posting")
    return 1 if report.failed or report.rejects else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from exchange.demo.runner import DemoOptions, run_demo

    directory = Path(args.dir) if args.dir else None
    return run_demo(DemoOptions(directory=directory, json=args.json, keep_running=args.keep_running))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exchange", description="Cross-border threat alert exchange: a TAXII 2.1 hub for national CERTs.",
        epilog="Exit codes: 0 ok, 1 a check failed, 2 usage or configuration error.")
    parser.add_argument("--version", action="version", version=f"exchange {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default=str(DEFAULT_CONFIG), help="hub config file (TOML; default: %(default)s)")
        p.add_argument("--data-dir", help="directory of the hub's SQLite files (overrides hub.data_dir)")

    serve = sub.add_parser("serve", help="run the hub's TAXII 2.1 server",
                           description="Run the hub: TAXII 2.1 API, durable journal, processor, audit log.")
    with_config(serve)
    serve.add_argument("--host", help="address to listen on (overrides hub.host; default 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="TCP port (overrides hub.port; 0 picks a free one)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", choices=["kv", "json"],
                       help="log lines as key=value or JSON, one event per line (overrides hub.log_format; default kv)")
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser(
        "demo", help="run a live cross-border federation on 127.0.0.1 and replay a worm campaign through it",
        description="Start four national CERT hubs (separate `exchange serve` processes peering in a ring, each "
                    "with its own SQLite data), a CERT running the medallion reference TAXII server, and a member "
                    "organization's webhook receiver, all on 127.0.0.1; replay a WannaCry-like worm reported by "
                    "five countries as STIX 2.1, STIX 2.0, a MISP event and a defanged CSV (with duplicates, a "
                    "TLP:RED claim and a warninglisted value); show the objects travel, the duplicates merge, "
                    "one coordinated alert open and escalate, and its signed deliveries to the member; check the "
                    "promises (one alert, once per version, RED contained, benign value quiet) and stop every "
                    "process. Needs the `demo` extra (medallion; rich for the live display): pip install "
                    "'exchange[demo]'. Demo accounts have fixed, published passwords; everything listens on "
                    "127.0.0.1 only.",
        epilog="Exit codes: 0 every check passed, 1 a check failed or the federation got stuck, 2 usage (a --dir "
               "that is not empty, medallion not installed), 130 Ctrl-C. Takes about 20 s.")
    demo.add_argument("--json", action="store_true",
                      help="print a machine-readable summary on stdout (alerts as delivered, counts per hub, "
                           "deliveries, pids); progress goes to stderr")
    demo.add_argument("--keep-running", action="store_true",
                      help="leave the federation up after the scenario and print its URLs and demo credentials, "
                           "until Ctrl-C")
    demo.add_argument("--dir", metavar="DIR",
                      help="new or empty directory for the hubs' configs, logs and SQLite data, kept afterwards "
                           "(default: a temporary directory, removed at the end)")
    demo.set_defaults(func=cmd_demo)

    normalize = sub.add_parser(
        "normalize", help="convert and deduplicate files into one STIX 2.1 bundle on stdout (no hub needed)",
        description="Convert STIX 2.1/2.0/1.x, MISP, CSV or text IOC files into canonical, deduplicated STIX 2.1. "
                    "Rejects go to stderr with file and line/object; exit 1 when anything was rejected. Notes "
                    "(converted with a caveat, e.g. a MISP event without its creator organization) go to stderr "
                    "too and leave the exit status alone.")
    normalize.add_argument("files", nargs="+", metavar="FILE")
    normalize.add_argument("--format", choices=FORMATS, default="auto", help="input format (default: detect)")
    normalize.add_argument("--identity", default="exchange normalize",
                           help="name of the identity authoring the canonical objects")
    normalize.set_defaults(func=cmd_normalize)

    ingest = sub.add_parser(
        "ingest", help="convert files and post them to a running hub's collection",
        description="Convert files like `normalize` and POST the objects to a TAXII 2.1 collection, waiting for "
                    "each status. Credentials: --user with the password in EXCHANGE_PASSWORD (or a prompt), or "
                    "a bearer token in EXCHANGE_TOKEN.")
    ingest.add_argument("files", nargs="+", metavar="FILE")
    ingest.add_argument("--hub", required=True, metavar="URL",
                        help="collection URL, e.g. http://127.0.0.1:9000/api/collections/inbox/")
    ingest.add_argument("--user", help="HTTP Basic username")
    ingest.add_argument("--format", choices=FORMATS, default="auto", help="input format (default: detect)")
    ingest.set_defaults(func=cmd_ingest)

    peers = sub.add_parser("peers", help="list the configured peers with their pull and push health",
                           description="Per peer collection: state, last success, last error, objects pulled, lag "
                                       "and cursor, read from the journal (the hub may be running or not).")
    with_config(peers)
    peers.add_argument("--json", action="store_true", help="print JSON instead of text")
    peers.set_defaults(func=cmd_peers)

    alerts = sub.add_parser("alerts", help="list the coordinated alerts with level, countries and sources",
                            description="The latest version of every alert (open, escalated, closed, expired), "
                                        "read from alerts.db in the data directory (the hub may be running or not).")
    with_config(alerts)
    alerts.add_argument("--json", action="store_true", help="print JSON instead of text")
    alerts.set_defaults(func=cmd_alerts)

    deliveries = sub.add_parser(
        "deliveries", help="list alert deliveries per subscription; show and replay dead letters",
        description="Queue totals per subscription, or with --dead the dead letters (deliveries whose retries "
                    "ran out). --replay ID puts a dead letter back in its queue; a running hub delivers it on its "
                    "next wake-up (the admin API POST /admin/deliveries/ID/replay wakes it at once).")
    with_config(deliveries)
    deliveries.add_argument("--dead", action="store_true", help="list the dead letters")
    deliveries.add_argument("--replay", type=int, metavar="ID", help="replay one dead letter")
    deliveries.add_argument("--json", action="store_true", help="print JSON instead of text")
    deliveries.set_defaults(func=cmd_deliveries)

    config = sub.add_parser("config", help="configuration tools").add_subparsers(dest="action", required=True)
    check = config.add_parser("check", help="validate a config file without starting the hub")
    check.add_argument("file")
    check.set_defaults(func=cmd_config_check)

    audit = sub.add_parser("audit", help="audit log tools").add_subparsers(dest="action", required=True)
    verify = audit.add_parser("verify", help="verify the hash chain; reports the first broken link")
    with_config(verify)
    verify.set_defaults(func=cmd_audit_verify)

    account = sub.add_parser("account", help="credential tools").add_subparsers(dest="action", required=True)
    hashpw = account.add_parser("hash-password", help="print the scrypt hash of a password for the config")
    hashpw.add_argument("--stdin", action="store_true", help="read the password from stdin instead of a prompt")
    hashpw.set_defaults(func=cmd_hash_password)
    token = account.add_parser("new-token", help="make a bearer API token and its hash for the config")
    token.set_defaults(func=cmd_new_token)
    return parser


def _hint(args: argparse.Namespace, exc: Exception) -> str:
    """One line on what to do next, for the command that failed."""
    command = getattr(args, "command", None)
    if isinstance(exc, TaxiiClientError | TransientError):
        return "check the hub URL, that the hub is running, and the credentials (EXCHANGE_PASSWORD / EXCHANGE_TOKEN)"
    if command == "demo":
        return "`exchange demo --help` lists the options; --dir must be a new or empty directory"
    return "`exchange config check FILE` validates a config; see docs/configuration.md"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except (ConfigError, TaxiiClientError, TransientError) as exc:
        print(f"exchange: {exc}", file=sys.stderr)
        print(f"hint: {_hint(args, exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
