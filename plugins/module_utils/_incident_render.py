# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Markdown and self-contained HTML for the incident report and the post-mortem. Private to selfheal.devops.

Charts are drawn with matplotlib (optional: the modules fail with a clear message when HTML charts are asked for
and it is missing) as static SVG inlined in the page: glyphs as paths (no font), no metadata, a fixed id salt, so the
same data gives the same bytes (a re-run writes nothing). The page carries a Content-Security-Policy that forbids
every fetch (default-src 'none'): no script, font, image or style is loaded from anywhere.
"""

import html
import io
import re

from ansible_collections.selfheal.devops.plugins.module_utils import _incident_metrics as metrics

try:
    import matplotlib
    from matplotlib.figure import Figure
except ImportError as exc:  # pragma: no cover - reported by the modules through missing_required_lib
    HAS_MATPLOTLIB = False
    MATPLOTLIB_IMPORT_ERROR = exc
else:
    HAS_MATPLOTLIB = True
    MATPLOTLIB_IMPORT_ERROR = None

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
MODE_COLORS = {"auto": "#2e7d32", "approve": "#1565c0", "escalated": "#c62828"}
STAGE_COLORS = {"detect": "#8e24aa", "page": "#f9a825", "acknowledge": "#1565c0", "fix": "#2e7d32", "resolve": "#546e7a"}
FIGURE_NAMES = {"time_to_detect": "Time to detect (MTTD)", "time_to_acknowledge": "Time to acknowledge (MTTA)",
                "time_to_heal": "Time to heal", "time_to_resolve": "Time to resolve (MTTR)"}
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1b1f24;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
.sub{color:#57606a;margin-top:0}table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}th{background:#f6f8fa}
td.n{text-align:right;font-variant-numeric:tabular-nums}.tiles{display:flex;flex-wrap:wrap;gap:.8rem}
.tile{border:1px solid #d0d7de;border-radius:6px;padding:.6rem .9rem;min-width:9rem}.tile b{display:block;font-size:1.4rem}
figure{margin:1rem 0}figure svg{max-width:100%;height:auto}figcaption{color:#57606a;font-size:.85rem}
.note{background:#fff8c5;border:1px solid #d4a72c;padding:.5rem .8rem;border-radius:6px}
pre{background:#f6f8fa;padding:.6rem;overflow:auto;font-size:.85rem}
"""


# --- charts ---------------------------------------------------------------------------------------------------

def require_charts():
    """Raise ImportError with the reason when matplotlib is missing."""
    if not HAS_MATPLOTLIB:
        raise ImportError(str(MATPLOTLIB_IMPORT_ERROR))


def _figure(width, height):
    matplotlib.rcParams["svg.hashsalt"] = "selfheal.devops"
    matplotlib.rcParams["svg.fonttype"] = "path"
    return Figure(figsize=(width, height), dpi=100)


def svg_of(figure):
    """The figure as an inline <svg> element: no XML prolog, DOCTYPE (it names an external DTD) or metadata."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)
    return text.strip()


def _minutes(seconds):
    return None if seconds is None else seconds / 60.0


def chart_per_day(report):
    days = report["per_day"]
    if not days:
        return None
    figure = _figure(9, 2.8)
    axes = figure.add_subplot()
    labels = [d["day"][5:] for d in days]
    bottom = [0] * len(days)
    for mode in metrics.MODES:
        values = [d[mode] for d in days]
        axes.bar(labels, values, bottom=bottom, color=MODE_COLORS[mode], label=mode)
        bottom = [b + v for b, v in zip(bottom, values)]
    axes.set_ylabel("incidents")
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    axes.tick_params(axis="x", labelrotation=90, labelsize=7)
    axes.spines[["top", "right"]].set_visible(False)
    return svg_of(figure)


def chart_times_by_mode(report):
    figures = ("time_to_acknowledge", "time_to_heal", "time_to_resolve")
    modes = [m for m in metrics.MODES if report["times"][m]["time_to_resolve"]["count"] or report["times"][m]["time_to_heal"]["count"]]
    if not modes:
        return None
    figure = _figure(9, 3)
    axes_list = figure.subplots(1, len(figures))
    for axes, name in zip(axes_list, figures):
        medians = [_minutes(report["times"][m][name]["median"]) or 0 for m in modes]
        p90s = [_minutes(report["times"][m][name]["p90"]) or 0 for m in modes]
        positions = range(len(modes))
        axes.bar([p - 0.2 for p in positions], medians, width=0.4, color=[MODE_COLORS[m] for m in modes], label="median")
        axes.bar([p + 0.2 for p in positions], p90s, width=0.4, color=[MODE_COLORS[m] for m in modes], alpha=0.45, label="p90")
        axes.set_xticks(list(positions))
        axes.set_xticklabels(modes, fontsize=8)
        axes.set_title(FIGURE_NAMES[name].split(" (")[0], fontsize=9)
        axes.set_ylabel("minutes", fontsize=8)
        axes.spines[["top", "right"]].set_visible(False)
    axes_list[0].legend(fontsize=7, frameon=False)
    figure.tight_layout()
    return svg_of(figure)


def chart_bars(rows, value_key, label_key, xlabel, color="#1565c0", limit=12):
    rows = [r for r in rows if r.get(value_key) is not None][:limit]
    if not rows:
        return None
    figure = _figure(7, 0.35 * len(rows) + 0.8)
    axes = figure.add_subplot()
    labels = [str(r[label_key]) for r in rows][::-1]
    values = [r[value_key] for r in rows][::-1]
    axes.barh(labels, values, color=color)
    axes.set_xlabel(xlabel, fontsize=8)
    axes.tick_params(labelsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    return svg_of(figure)


def chart_stages(incident):
    """The post-mortem's timeline: one bar per stage (detect, page, acknowledge, fix, resolve), seconds from onset."""
    segments = stage_segments(incident)
    if not segments:
        return None
    origin = segments[0][1]
    figure = _figure(9, 0.45 * len(segments) + 1.0)
    axes = figure.add_subplot()
    for row, (name, start, end) in enumerate(reversed(segments)):
        axes.barh(row, max(end - start, 0.5), left=start - origin, color=STAGE_COLORS[name.split()[0]], height=0.6)
        axes.text(end - origin, row, "  %s" % metrics.duration_text(end - start), va="center", fontsize=8)
    axes.set_yticks(range(len(segments)))
    axes.set_yticklabels([s[0] for s in reversed(segments)], fontsize=9)
    axes.set_xlabel("seconds since %s" % ("the failure began" if incident["times"].get("onset") else "detection"), fontsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    return svg_of(figure)


def stage_segments(incident):
    """[(stage, start, end)] of the incident, in time order, from the stage times that are known."""
    times = incident["times"]
    out = []

    def add(name, first, last):
        if times.get(first) is not None and times.get(last) is not None:
            out.append((name, times[first], max(times[first], times[last])))

    add("detect", "onset", "detected")
    add("page", "detected", "paged")
    add("acknowledge", "paged", "acknowledged")
    add("fix", "fix_started", "healthy" if times.get("healthy") is not None else "escalated")
    add("resolve", "detected", "resolved")
    return out


# --- shared pieces ----------------------------------------------------------------------------------------------

def esc(value):
    return html.escape("" if value is None else str(value), quote=True)


def seconds_cell(value):
    return metrics.duration_text(value) if value is not None else "n/a"


def md_table(headers, rows):
    def cell(value):
        return str("" if value is None else value).replace("|", "\\|").replace("\n", " ")

    lines = ["| %s |" % " | ".join(headers), "|%s|" % "|".join("---" for dummy in headers)]
    lines.extend("| %s |" % " | ".join(cell(v) for v in row) for row in rows)
    return "\n".join(lines)


def html_table(headers, rows, numeric=()):
    head = "".join("<th>%s</th>" % esc(h) for h in headers)
    body = []
    for row in rows:
        cells = "".join('<td class="n">%s</td>' % esc(v) if i in numeric else "<td>%s</td>" % esc(v) for i, v in enumerate(row))
        body.append("<tr>%s</tr>" % cells)
    return "<table><thead><tr>%s</tr></thead><tbody>%s</tbody></table>" % (head, "".join(body))


def page(title, body):
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"%s\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>%s</title><style>%s</style></head><body>%s</body></html>\n") % (CSP, esc(title), STYLE, body)


def figure_block(svg, caption, name):
    if svg is None:
        return ""
    return '<figure class="chart" data-chart="%s">%s<figcaption>%s</figcaption></figure>' % (esc(name), svg, esc(caption))


def times_rows(times):
    rows = []
    for name in metrics.FIGURES:
        stats = times[name]
        rows.append([FIGURE_NAMES[name], stats["count"], seconds_cell(stats["median"]), seconds_cell(stats["p90"]),
                     seconds_cell(stats["mean"])])
    return rows


# --- the report ---------------------------------------------------------------------------------------------------

def report_sections(report, limit=50):
    """Titles and rows shared by the Markdown and the HTML report."""
    totals = report["totals"]
    mode_rows = []
    for mode in ("all",) + metrics.MODES:
        times = report["times"][mode]
        mode_rows.append([mode, totals["incidents"] if mode == "all" else totals[mode]]
                         + [seconds_cell(times[n][k]) for n in ("time_to_detect", "time_to_acknowledge", "time_to_resolve")
                            for k in ("median", "p90")])
    responders = [[r["name"], r["pages"], r["responses"], r["acknowledged_first"], seconds_cell(r["response_time"]["median"]),
                   seconds_cell(r["response_time"]["p90"]), r["record_week"] or "", "yes" if r["broke_record"] else ""]
                  for r in report["responders"]]
    recurrences = [[g["description"], g["count"], g["first"], g["last"], g["last_fixed_by"], seconds_cell(g["last_time_to_heal"])]
                   for g in report["recurrences"]]
    incidents = [[i["key"], i["detected"], i["scenario"] or "", i["mode"], ", ".join(i["hosts"]), i["ticket"] or "",
                  seconds_cell(i["time_to_acknowledge"]), seconds_cell(i["time_to_heal"]), seconds_cell(i["time_to_resolve"])]
                 for i in report["incidents"][-limit:][::-1]]
    return mode_rows, responders, recurrences, incidents


MODE_HEADERS = ["mode", "incidents", "MTTD median", "MTTD p90", "MTTA median", "MTTA p90", "MTTR median", "MTTR p90"]
RESPONDER_HEADERS = ["responder", "pages", "responses", "acknowledged first", "response median", "response p90",
                     "best week", "broke their record"]
RECURRENCE_HEADERS = ["signature", "incidents", "first", "last", "last fixed by", "in"]
INCIDENT_HEADERS = ["incident", "detected", "scenario", "mode", "hosts", "ticket", "MTTA", "heal", "MTTR"]


def report_markdown(report, title, limit=50):
    totals, automation = report["totals"], report["automation"]
    mode_rows, responders, recurrences, incidents = report_sections(report, limit)
    period = report["period"]
    parts = ["# %s" % title, "",
             "Period: %s to %s (incidents detected %s to %s)." % (period["start"] or "the beginning", period["end"] or "now",
                                                                  period["first"] or "-", period["last"] or "-"), "",
             "## Summary", "",
             md_table(["incidents", "auto", "approve", "escalated", "fix success", "escalation rate", "fixed before anyone acknowledged",
                       "time saved by the automation"],
                      [[totals["incidents"], totals["auto"], totals["approve"], totals["escalated"], percent(totals["fix_success_rate"]),
                        percent(totals["escalation_rate"]), "%d (%s)" % (automation["fixed_before_ack"], percent(automation["share"])),
                        seconds_cell(automation["saved_seconds"])]]), "",
             "## Response times by mode", "", md_table(MODE_HEADERS, mode_rows), "",
             "## Counts", ""]
    for name in ("scenario", "service", "host", "management_zone"):
        rows = [[c["name"], c["count"]] for c in report["counts"][name]]
        parts += ["### Per %s" % name.replace("_", " "), "", md_table([name.replace("_", " "), "incidents"], rows), ""]
    parts += ["## Responders", "", md_table(RESPONDER_HEADERS, responders) if responders else "No page was answered.", "",
              "## Recurrences", "", md_table(RECURRENCE_HEADERS, recurrences) if recurrences else "No incident recurred.", "",
              "## Latest incidents", "", md_table(INCIDENT_HEADERS, incidents), ""]
    return "\n".join(parts)


def percent(value):
    return "n/a" if value is None else "%.1f %%" % (value * 100)


def report_charts(report):
    return [
        ("per-day", "Incidents per day, by mode", chart_per_day(report)),
        ("times-by-mode", "Median (solid) and p90 (light) in minutes, by mode", chart_times_by_mode(report)),
        ("per-scenario", "Incidents per scenario", chart_bars(report["counts"]["scenario"], "count", "name", "incidents")),
        ("per-host", "Incidents per host (top 12)", chart_bars(report["counts"]["host"], "count", "name", "incidents", "#6a1b9a")),
        ("responders", "Median response time per responder (minutes)",
         chart_bars([dict(name=r["name"], minutes=_minutes(r["response_time"]["median"])) for r in report["responders"]],
                    "minutes", "name", "minutes", "#f9a825")),
        ("recurrences", "Most frequent recurrences",
         chart_bars(report["recurrences"], "count", "description", "incidents", "#c62828")),
    ]


def report_html(report, title, charts=True, limit=50):
    totals, automation = report["totals"], report["automation"]
    mode_rows, responders, recurrences, incidents = report_sections(report, limit)
    drawn = dict((name, (caption, svg)) for name, caption, svg in report_charts(report)) if charts else {}

    def chart(name):
        caption, svg = drawn.get(name, (None, None))
        return figure_block(svg, caption, name)

    period = report["period"]
    tiles = [("incidents", totals["incidents"]), ("fix success", percent(totals["fix_success_rate"])),
             ("escalation rate", percent(totals["escalation_rate"])),
             ("MTTA median", seconds_cell(report["times"]["all"]["time_to_acknowledge"]["median"])),
             ("MTTR median", seconds_cell(report["times"]["all"]["time_to_resolve"]["median"])),
             ("fixed before ack", "%d" % automation["fixed_before_ack"]),
             ("time saved", seconds_cell(automation["saved_seconds"]))]
    body = ["<h1>%s</h1>" % esc(title),
            '<p class="sub">%s to %s &middot; incidents detected %s to %s</p>' % (
                esc(period["start"] or "the beginning"), esc(period["end"] or "now"), esc(period["first"] or "-"), esc(period["last"] or "-")),
            '<div class="tiles">%s</div>' % "".join('<div class="tile"><b>%s</b>%s</div>' % (esc(v), esc(k)) for k, v in tiles)]
    if not charts:
        body.append('<p class="note">Charts are off (charts: false).</p>')
    body += ["<h2>Incidents over time</h2>", chart("per-day"),
             "<h2>Response times by mode</h2>", chart("times-by-mode"), html_table(MODE_HEADERS, mode_rows, numeric=range(1, 8)),
             "<h2>Where</h2>", chart("per-scenario"), chart("per-host")]
    for name in ("scenario", "service", "host", "management_zone"):
        rows = [[c["name"], c["count"]] for c in report["counts"][name]]
        body.append("<h3>Per %s</h3>%s" % (esc(name.replace("_", " ")), html_table([name.replace("_", " "), "incidents"], rows, numeric=(1,))))
    body += ["<h2>Responders</h2>", chart("responders"),
             html_table(RESPONDER_HEADERS, responders, numeric=(1, 2, 3)) if responders else "<p>No page was answered.</p>",
             "<h2>Recurrences</h2>", chart("recurrences"),
             html_table(RECURRENCE_HEADERS, recurrences, numeric=(1,)) if recurrences else "<p>No incident recurred.</p>",
             "<h2>Latest incidents</h2>", html_table(INCIDENT_HEADERS, incidents)]
    return page(title, "".join(body)), sorted(name for name, (caption, svg) in drawn.items() if svg)


# --- the post-mortem ---------------------------------------------------------------------------------------------

def postmortem_facts(incident, problem, ticket):
    problem = problem or {}
    root = incident.get("root_cause") or {}
    return [
        ("Incident", incident["key"]),
        ("Problem", "%s %s" % (incident.get("problem") or "", "(%s)" % problem.get("url") if problem.get("url") else "")),
        ("Title", incident.get("title") or ""),
        ("Scenario", incident.get("scenario") or "unknown"),
        ("Mode", incident.get("mode")),
        ("Severity / impact", "%s / %s" % (problem.get("severity") or incident.get("severity") or "-", problem.get("impact") or "-")),
        ("Root cause", "%s (%s)" % (root.get("name"), root.get("type")) if root else "not reported"),
        ("Impacted", ", ".join("%s (%s)" % (e.get("name"), e.get("type")) for e in incident.get("entities") or []) or ", ".join(incident["hosts"])),
        ("Management zones", ", ".join(incident.get("management_zones") or []) or "-"),
        ("Ticket", "%s %s" % ((ticket or {}).get("key") or "-", (ticket or {}).get("url") or "")),
        ("Outcome", "fixed by %s" % metrics.fixed_by(incident) if incident.get("fixed") else
         ("escalated to a human" if incident.get("escalated") else "not fixed")),
    ]


def stage_rows(incident):
    times = incident["times"]
    origin = times.get("onset") or times.get("detected")
    rows = []
    for stage in metrics.STAGES + ("escalated",):
        moment = times.get(stage)
        if moment is not None:
            rows.append([stage.replace("_", " "), metrics.iso(moment), "+%s" % metrics.duration_text(moment - origin) if origin else ""])
    return rows


def postmortem_markdown(document):
    incident, problem = document["incident"], document.get("problem")
    figures = metrics.figures(incident)
    parts = ["# Post-mortem: %s" % (incident.get("title") or incident["key"]), "",
             md_table(["", ""], postmortem_facts(incident, problem, document.get("ticket"))), "",
             "## Figures", "", md_table(["figure", "seconds", "reads"],
                                        [[FIGURE_NAMES[n], figures[n], seconds_cell(figures[n])] for n in metrics.FIGURES]), "",
             "## Stages", "", md_table(["stage", "time (UTC)", "since start"], stage_rows(incident)), ""]
    evidence = (problem or {}).get("evidence") or []
    if evidence:
        rows = [[e.get("type"), e.get("name"), e.get("entity"), e.get("start")] for e in evidence]
        parts += ["## Evidence (Dynatrace)", "", md_table(["type", "what", "entity", "since"], rows), ""]
    if document.get("responses"):
        parts += ["## Page and responses", "", md_table(["responder", "response", "paged", "answered", "after"], response_rows(document)), ""]
    parts += ["## What the automation did", "", md_table(["time (UTC)", "action", "step", "system", "result", "seconds", "detail"],
                                                         record_rows(document)), ""]
    if document.get("recurrence"):
        parts += ["## Recurrence", "", document["recurrence"], ""]
    if document.get("transcript"):
        parts += ["## Chat (Slack transcript)", "", document["transcript"].strip(), ""]
    parts += ["## Follow-up", "", "- What would have prevented this failure?", "- Should this scenario stay automatic, or change mode?",
              "- Does the recurrence call for a problem ticket?", ""]
    return "\n".join(parts)


def response_rows(document):
    rows = []
    for response in document.get("responses") or []:
        after = None if response.get("paged") is None or response.get("time") is None else response["time"] - response["paged"]
        rows.append([response.get("responder"), response.get("response"), metrics.iso(response.get("paged")),
                     metrics.iso(response.get("time")), seconds_cell(after)])
    return rows


def record_rows(document):
    return [[r.get("time"), r.get("action"), r.get("step"), r.get("system"), r.get("result"), r.get("duration"), r.get("detail")]
            for r in document.get("records") or []]


def postmortem_html(document, charts=True):
    incident, problem = document["incident"], document.get("problem")
    figures = metrics.figures(incident)
    title = "Post-mortem: %s" % (incident.get("title") or incident["key"])
    svg = chart_stages(incident) if charts else None
    tiles = "".join('<div class="tile"><b>%s</b>%s</div>' % (esc(seconds_cell(figures[n])), esc(FIGURE_NAMES[n])) for n in metrics.FIGURES)
    body = ["<h1>%s</h1>" % esc(title), '<p class="sub">%s &middot; %s</p>' % (esc(incident["key"]), esc(incident.get("mode"))),
            '<div class="tiles">%s</div>' % tiles,
            "<h2>Timeline</h2>", figure_block(svg, "Stages of the incident", "stages"),
            html_table(["stage", "time (UTC)", "since start"], stage_rows(incident)),
            "<h2>Facts</h2>", html_table(["", ""], postmortem_facts(incident, problem, document.get("ticket")))]
    evidence = (problem or {}).get("evidence") or []
    if evidence:
        rows = [[e.get("type"), e.get("name"), e.get("entity"), e.get("start")] for e in evidence]
        body += ["<h2>Evidence (Dynatrace)</h2>", html_table(["type", "what", "entity", "since"], rows)]
    if document.get("responses"):
        body += ["<h2>Page and responses</h2>", html_table(["responder", "response", "paged", "answered", "after"], response_rows(document))]
    body += ["<h2>What the automation did</h2>",
             html_table(["time (UTC)", "action", "step", "system", "result", "seconds", "detail"], record_rows(document), numeric=(5,))]
    if document.get("recurrence"):
        body += ["<h2>Recurrence</h2>", "<p>%s</p>" % esc(document["recurrence"])]
    if document.get("transcript"):
        body += ["<h2>Chat (Slack transcript)</h2>", "<pre>%s</pre>" % esc(document["transcript"].strip())]
    return page(title, "".join(body)), ["stages"] if svg else []
