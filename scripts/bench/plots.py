"""The report's figures as PNGs (matplotlib, Agg backend): one or two per benchmark, named by what they show."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLORS = {"hub": "#1f77b4", "hub_full": "#6baed6", "medallion": "#ff7f0e", "opentaxii": "#2ca02c",
          "baseline": "#ff7f0e", "durable": "#9ecae1"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(ax: Any, names: list[str], figures: list[dict[str, Any]], colors: list[str]) -> None:
    """Median bars, min-max whiskers and every run as a dot."""
    for x, (fig, color) in enumerate(zip(figures, colors, strict=True)):
        if fig.get("median") is None:
            ax.text(x, 1, "failed", ha="center", va="bottom", rotation=90, fontsize=8)
            continue
        ax.bar(x, fig["median"], color=color, alpha=0.85)
        ax.errorbar(x, fig["median"], yerr=[[fig["median"] - fig["min"]], [fig["max"] - fig["median"]]],
                    color="black", capsize=4, lw=1)
        ax.scatter([x] * len(fig["runs"]), fig["runs"], color="black", s=10, zorder=3)
    ax.set_xticks(range(len(names)), names, rotation=15)


def _save(fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    _pyplot().close(fig)
    return name


def taxii(res: dict[str, Any], out: Path) -> list[str]:
    plt = _pyplot()
    kinds = [k for k in ("medallion", "opentaxii", "hub", "hub_full") if f"ingest.{k}" in res["figures"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, phase in zip(axes, ("ingest", "read"), strict=True):
        _bars(ax, kinds, [res["figures"][f"{phase}.{k}"] for k in kinds], [COLORS[k] for k in kinds])
        ax.set_yscale("log")
        ax.set_ylabel("objects/s (log)")
        ax.set_title(f"TAXII {phase}, N={res['settings']['n']:,}, {res['settings']['runs']} runs")
    return [_save(fig, out, "taxii.png")]


def scaling(res: dict[str, Any], out: Path) -> list[str]:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for server, style in (("hub", "-o"), ("medallion", "--s")):
        pts = sorted((p for p in res["points"] if p["server"] == server), key=lambda p: p["n"])
        for phase, color in (("ingest", COLORS["hub"]), ("read", "#d62728")):
            ok = [p for p in pts if p[phase]["median"]]
            if ok:
                axes[0].errorbar([p["n"] for p in ok], [p[phase]["median"] for p in ok],
                                 yerr=[[p[phase]["median"] - p[phase]["min"] for p in ok],
                                       [p[phase]["max"] - p[phase]["median"] for p in ok]],
                                 fmt=style, color=color if server == "hub" else COLORS["medallion"], capsize=3,
                                 label=f"{server} {phase}")
        ok = [p for p in pts if p["rss_mib"]["median"]]
        if ok:
            axes[1].plot([p["n"] for p in ok], [p["rss_mib"]["median"] for p in ok], style,
                         color=COLORS[server], label=f"{server} peak RSS")
    hub = sorted((p for p in res["points"] if p["server"] == "hub" and p["rss_mib"]["median"]), key=lambda p: p["n"])
    if hub:  # what linear growth from the smallest size would look like
        n0, r0 = hub[0]["n"], hub[0]["rss_mib"]["median"]
        axes[1].plot([p["n"] for p in hub], [r0 * p["n"] / n0 for p in hub], ":", color="grey",
                     label="linear from the smallest")
    axes[0].set(xscale="log", yscale="log", xlabel="objects stored (log)", ylabel="objects/s (log)",
                title="TAXII throughput vs size")
    axes[1].set(xscale="log", yscale="log", xlabel="objects stored (log)", ylabel="MiB (log)",
                title="peak RSS (VmHWM) vs size")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    return [_save(fig, out, "scaling.png")]


def pipeline(res: dict[str, Any], out: Path) -> list[str]:
    plt = _pyplot()
    keys = [k for k in ("hub", "baseline", "durable") if k in res["figures"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    _bars(ax, ["hub (1)", "stix2.parse (2)", "hub durable (3)"][:len(keys)], [res["figures"][k] for k in keys],
          [COLORS[k] for k in keys])
    target = next((t for t in res["targets"] if t["op"] == ">=" and t["value"] > 100), None)
    if target:
        ax.axhline(target["value"], color="red", ls="--", lw=1, label=f"target {target['value']:,.0f}/s")
        ax.legend(fontsize=8)
    ax.set(yscale="log", ylabel="objects/s (log)", title=f"normalize + dedup, N={res['settings']['n']:,}")
    return [_save(fig, out, "pipeline.png")]


def federation(res: dict[str, Any], out: Path) -> list[str]:
    plt = _pyplot()
    keys = [k for k in ("pull.hub", "stored.hub", "stored.hub@pair", "stored.medallion@pair") if k in res["figures"]]
    names = [f"hub->hub pull\nN={res['settings']['n']:,}", f"hub->hub stored\nN={res['settings']['n']:,}",
             f"hub->hub\nN={res['settings']['pair_n']:,}", f"medallion->hub\nN={res['settings']['pair_n']:,}"]
    fig, ax = plt.subplots(figsize=(7, 4))
    _bars(ax, names[:len(keys)], [res["figures"][k] for k in keys],
          [COLORS["hub"], COLORS["hub_full"], COLORS["hub"], COLORS["medallion"]][:len(keys)])
    ax.set(yscale="log", ylabel="objects/s (log)", title="federation pull")
    return [_save(fig, out, "federation.png")]


def fanout(res: dict[str, Any], out: Path) -> list[str]:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, style in (("p50", "-o"), ("p99", "-s"), ("last", ":^")):
        runs = res["figures"][key]["runs"]
        ax.plot(range(1, len(runs) + 1), runs, style, label=key)
    target = res["targets"][0]["value"] if res["targets"] else None
    if target:
        ax.axhline(target, color="red", ls="--", lw=1, label=f"target p99 < {target:.0f} ms")
    ax.set(xlabel="round (one alert each)", ylabel="ms from the threshold-crossing POST", ylim=(0, None),
           title=f"fan-out to {res['settings']['subscribers']:,} webhook subscribers")
    ax.legend(fontsize=8)
    return [_save(fig, out, "fanout.png")]


def ratios(results: dict[str, dict[str, Any]], out: Path) -> list[str]:
    """Every pair-by-pair ratio: each run's ratio as a dot, the median as a bar."""
    rows = [(f"{name}: {r['label']}", r) for name, res in results.items() for r in res.get("ratios", {}).values()
            if r.get("median")]
    if not rows:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
    for y, (_, r) in enumerate(rows):
        ax.barh(y, r["median"], color=COLORS["hub"], alpha=0.6)
        ax.scatter(r["runs"], [y] * len(r["runs"]), color="black", s=12, zorder=3)
    ax.axvline(1, color="grey", lw=1)
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
    ax.set(xscale="log", xlabel="hub / baseline, run by run (log; 1 = as fast)", title="pair-by-pair ratios")
    return [_save(fig, out, "ratios.png")]


PLOTS = {"taxii": taxii, "scaling": scaling, "pipeline": pipeline, "federation": federation, "fanout": fanout}


def draw(results: dict[str, dict[str, Any]], out: Path) -> tuple[dict[str, list[str]], str]:
    """PNG names per benchmark (and "ratios"), or why there are none."""
    try:
        _pyplot()
    except ImportError:
        return {}, "no plots: matplotlib is not installed (pip install -e '.[bench]')"
    drawn: dict[str, list[str]] = {}
    for name, res in results.items():
        if name in PLOTS and res.get("figures"):
            drawn[name] = PLOTS[name](res, out)
    drawn["ratios"] = ratios(results, out)
    return drawn, ""
