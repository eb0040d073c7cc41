"""What the demo says as things happen: the reports it replays, what the watcher saw change, the member's
webhook deliveries, and how to reach the federation it leaves running."""

from collections.abc import Callable

from exchange.demo.progress import Progress
from exchange.demo.receiver import Received
from exchange.demo.replay import Prepared
from exchange.demo.scenario import Channel
from exchange.demo.summary import alert_ext
from exchange.demo.topology import ALERTS, INBOX, INDICATORS, MEDALLION_LOGIN, MEMBER, OPERATOR, Topology
from exchange.demo.watch import Event
from exchange.policy.tlp import Tlp

_CONVERTED = {Channel.MISP: " (converted by exchange's MISP reader)",
              Channel.CSV: " (converted by exchange's CSV reader)"}


def show_report(progress: Progress, item: Prepared) -> None:
    report = item.report
    indicators = sum(1 for o in item.objects if o.get("type") == "indicator")
    marking = f", {report.tlp.label}" if report.tlp is not Tlp.GREEN else ""
    progress.event(f"{report.reporter} -> {report.target}: {report.channel}{_CONVERTED.get(report.channel, '')}, "
                   f"{len(item.objects)} objects, {indicators} indicators{marking}", style="bold")
    for reject in item.rejects[:5]:
        progress.event(f"  not converted: {reject}", style="red")


def show_event(progress: Progress, topology: Topology, event: Event) -> None:
    kind, hub, detail = event
    if kind == "alert":
        countries = ", ".join(detail.get("countries") or [])
        progress.event(f"{hub}: alert {detail['id']} {detail['status']}: level {detail['level']} "
                       f"({detail['level_name']}), {countries}", style="bold yellow")
    elif kind == "pulled":
        source, count = detail
        names = {f"peer:{h.peer_id}": h.name for h in topology.hubs} | {
            f"peer:{topology.medallion.peer_id}": f"{topology.medallion.name} (medallion)"}
        progress.event(f"{hub} <- {names.get(source, source)}: {count} object(s) pulled", style="dim")
    elif kind == "medallion":
        progress.event(f"{hub} (medallion) now holds {detail} objects", style="dim")


def show_delivery(progress: Progress, topology: Topology, entry: Received) -> None:
    ext = alert_ext(entry.alert)
    note = " (a repeat: the member drops it)" if entry.repeat else ""
    progress.event(f"{topology.member.name} <- webhook from {topology.member.hub}: alert version "
                   f"{(entry.alert or {}).get('modified')}, level {ext.get('level')} ({ext.get('level_name')}), "
                   f"{', '.join(ext.get('countries') or [])}; signature valid, idempotency key "
                   f"{entry.idempotency_key}{note}", style="bold green")


def show_access(progress: Progress, topology: Topology) -> None:
    show: Callable[[str], None] = progress.event
    progress.heading("The federation is running: explore it with any TAXII 2.1 client; Ctrl-C stops it")
    show(f"demo accounts (fixed demo passwords, loopback only): operator {OPERATOR[0]} / {OPERATOR[1]}, "
         f"member {MEMBER[0]} / {MEMBER[1]} on every hub")
    for hub in topology.hubs:
        show(f"{hub.name} ({hub.country}): discovery {hub.base}/taxii2/  collections {hub.collection_url(INBOX)} "
             f"(inbox), {hub.collection_url(INDICATORS)} (indicators), {hub.collection_url(ALERTS)} (alerts); "
             f"operator API {hub.base}/admin/alerts, {hub.base}/admin/deliveries; {hub.base}/metrics; "
             f"data {hub.data_dir}")
    med = topology.medallion
    show(f"{med.name} (medallion): discovery {med.discovery}  collection {med.collection_url}  "
         f"login {MEDALLION_LOGIN[0]} / {MEDALLION_LOGIN[1]}")
    member_hub = topology.hub(topology.member.hub)
    show(f"{topology.member.name}'s live alert stream (SSE): {member_hub.base}/members/"
         f"{topology.member.sse_subscription}/events (login {MEMBER[0]} / {MEMBER[1]}); its webhook receiver: "
         f"{topology.member.webhook_url}")
    show("e.g. python -c \"from taxii2client.v21 import Collection; print(Collection('"
         f"{topology.hubs[0].collection_url(INDICATORS)}', user='{OPERATOR[0]}', password='{OPERATOR[1]}')"
         ".get_objects())\"")
