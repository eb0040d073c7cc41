"""report.md: the suite's results for a person to look at: machine, versions, command, a summary of every target,
then each benchmark's figures, ratios, plots, notes and the profile of its hottest path."""

from __future__ import annotations

from typing import Any

PROFILE_ROWS = 8


def num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:,.2f}x" if value < 10 else f"{value:,.1f}x"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"


def _figure_rows(figures: dict[str, dict[str, Any]]) -> list[str]:
    rows = ["| figure | median | min | max | IQR | spread | unit | runs |",
            "| --- | ---: | ---: | ---: | --- | ---: | --- | --- |"]
    for key, f in figures.items():
        runs = ", ".join(num(v) for v in f["runs"])
        iqr = f"{num(f['q1'])} - {num(f['q3'])}" if f["q1"] is not None else "-"
        spread = f"{100 * f['spread']:.0f}%" if f["spread"] is not None else "-"
        rows.append(f"| {f['label'] or key} | **{num(f['median'])}** | {num(f['min'])} | {num(f['max'])} | {iqr} | "
                    f"{spread} | {f['unit']} | {runs or 'failed'} |")
    return rows


def _ratio_rows(ratios: dict[str, dict[str, Any]]) -> list[str]:
    rows = ["| ratio, run by run | median | min | max | runs |", "| --- | ---: | ---: | ---: | --- |"]
    for r in ratios.values():
        rows.append(f"| {r['label']} | **{num(r['median'], 'x')}** | {num(r['min'], 'x')} | {num(r['max'], 'x')} | "
                    f"{', '.join(num(v, 'x') for v in r['runs']) or 'failed'} |")
    return rows


def _target_line(t: dict[str, Any]) -> str:
    measured, value = t["measured"], t["value"]
    verdict = "**met**" if t["met"] else "**missed**"
    if not t["met"] and measured is not None:
        gap = abs(measured - value)
        verdict += f" by {num(gap)} ({100 * gap / value:.0f}% of the target)"
    return f"| {t['issue']} | {t['label']} {t['op']} {num(value)} | {num(measured)} | {verdict} |"


def _profile_rows(name: str, prof: dict[str, Any]) -> list[str]:
    where = f"`{prof['file']}`" if prof.get("file") else "cProfile"
    if "sampled_seconds" in prof:
        what = (f"py-spy: {prof['sampled_seconds']:,.1f} s of busy samples over {prof.get('wall_seconds', 0):,.1f} s, "
                "all threads")
    else:
        what = f"cProfile: {prof['seconds']:.2f} s"
    rows = [f"**{name}** ({where}, {what}). Own time: in the function itself; total: with what it calls (the "
            "hub's own functions):", "",
            "| own time | function | | total | hub function |", "| ---: | --- | --- | ---: | --- |"]
    for own, total in zip(prof["self"][:PROFILE_ROWS], prof["inclusive"][:PROFILE_ROWS], strict=False):
        rows.append(f"| {100 * own['share']:.1f}% | `{own['frame']}` | | {100 * total['share']:.1f}% | "
                    f"`{total['frame']}` |")
    if prof.get("threads"):
        rows += ["", "Threads: " + ", ".join(f"{t['frame']} {100 * t['share']:.0f}%" for t in prof["threads"][:6])]
    return [*rows, ""]


def render(doc: dict[str, Any], plots: dict[str, list[str]], plots_note: str) -> str:
    m, v, c = doc["machine"], doc["versions"], doc["commit"]
    out = [
        "# exchange benchmark report", "",
        f"Made {doc['started']} by `{doc['command']}` in {doc['duration_s'] / 60:.1f} min.", "",
        "## Machine and versions", "",
        f"- {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['memory_gib']} GiB; {m['os']} "
        f"({m['platform']}); load average at start {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}",
        f"- exchange at `{c['commit']}` ({c['describe']})" + (
            f"; files differing from it: {', '.join(f'`{f}`' for f in c['dirty_files'])}" if c["dirty_files"] else "")
        + (f"; the run started at `{doc['commit_at_start']['describe']}`"
           if doc.get("commit_at_start", c)["commit"] != c["commit"] else ""),
        "- " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- runs per figure: {doc['runs']}; ratios are taken run by run (run i of the hub over run i of the baseline, "
        "both back to back) and their median reported", "",
        "## Targets", "", "| issue | target | measured (median) | verdict |", "| --- | --- | ---: | --- |",
    ]
    for res in doc["benchmarks"].values():
        out += [_target_line(t) for t in res.get("targets", [])]
    out.append("")
    if plots.get("ratios"):
        out += [f"![pair-by-pair ratios]({plots['ratios'][0]})", ""]
    if plots_note:
        out += [f"_{plots_note}_", ""]
    for name, res in doc["benchmarks"].items():
        out += [f"## {res.get('title', name)}", ""]
        if res.get("error"):
            out += ["**The benchmark failed:**", "", "```", res["error"][-3000:], "```", ""]
            continue
        load = res.get("load_average_after")
        if load:
            out.append(f"Took {res['seconds'] / 60:.1f} min; load average when it ended: "
                       f"{', '.join(f'{x:.1f}' for x in load)} (1, 5, 15 min; {doc['machine']['cores']} cores).")
            out.append("")
        out.append("Settings: " + ", ".join(f"{k}={val:,}" if isinstance(val, int) and not isinstance(val, bool)
                                            else f"{k}={val}" for k, val in res["settings"].items()))
        out += ["", *_figure_rows(res["figures"]), ""]
        if res.get("ratios"):
            out += [*_ratio_rows(res["ratios"]), ""]
        if res.get("growth"):
            g = res["growth"]
            out += [f"From {g['from']:,} to {g['to']:,} objects ({g['objects_x']:,.0f}x): cost per object x"
                    f"{g['ingest_cost_x']:.2f} (ingest), x{g['read_cost_x']:.2f} (read); peak RSS x{g['rss_x']:.2f}.",
                    ""]
        out += [f"![{name}]({png})" for png in plots.get(name, [])]
        out.append("")
        for label, reason in res.get("skipped", {}).items():
            out.append(f"- {label}: {reason}")
        out += [f"- {note}" for note in res.get("notes", [])]
        out += [f"- **problem**: {p[:1500]}" for p in res.get("problems", [])]
        out.append("")
        for prof_name, prof in res.get("profiles", {}).items():
            out += _profile_rows(prof_name, prof)
    return "\n".join(out).rstrip() + "\n"
