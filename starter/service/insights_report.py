"""The insights report as one self-contained HTML page: the figures per group, and charts
drawn as inline SVG (no script, no stylesheet or font from elsewhere), so the file can be
mailed, archived or opened offline. Charts: deployments and failed changes per week, the
distribution of lead times, failed changes by cause."""

from __future__ import annotations

import csv
import io
from collections import Counter
from html import escape

from schemas.insights import GroupInsights, InsightsReport, Spread

WIDTH, HEIGHT, PAD = 640, 240, 40
BLUE, RED, GREY = "#2b6cb0", "#c53030", "#718096"
# Lead-time buckets of the distribution: (upper bound in seconds, label).
BUCKETS = ((3600, "< 1h"), (4 * 3600, "1–4h"), (86400, "4h–1d"), (3 * 86400, "1–3d"),
           (7 * 86400, "3–7d"), (float("inf"), "> 7d"))


def span(seconds: float | None) -> str:
    """A duration for people, short enough for a table cell: 45s, 12m, 3h05m, 2d4h."""
    if seconds is None:
        return "-"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    hours = whole % 86400 // 3600
    return f"{whole // 86400}d{hours}h" if hours else f"{whole // 86400}d"


def _bars(title: str, labels: list[str], series: list[tuple[str, str, list[float]]],
          chart_id: str) -> str:
    """A grouped bar chart: one group of bars per label, one bar per series (name, colour,
    values), with a legend and the value above each bar."""
    top = max([v for _n, _c, values in series for v in values] + [1])
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    slot = inner_w / max(len(labels), 1)
    bar = slot * 0.8 / max(len(series), 1)
    parts = [f'<svg id="{chart_id}" class="chart" role="img" width="{WIDTH}" '
             f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
             f'stroke="{GREY}"/>']
    for i, label in enumerate(labels):
        x0 = PAD + i * slot + slot * 0.1
        for j, (name, colour, values) in enumerate(series):
            value = values[i]
            h = inner_h * value / top
            x, y = x0 + j * bar, HEIGHT - PAD - h
            parts.append(f'<rect class="bar" data-series="{escape(name)}" x="{x:.1f}" '
                         f'y="{y:.1f}" width="{bar * 0.9:.1f}" height="{h:.1f}" '
                         f'fill="{colour}"><title>{escape(label)}: {value:g} '
                         f'{escape(name)}</title></rect>')
            if value:
                parts.append(f'<text x="{x + bar * 0.45:.1f}" y="{y - 3:.1f}" font-size="10" '
                             f'text-anchor="middle">{value:g}</text>')
        parts.append(f'<text x="{x0 + slot * 0.4:.1f}" y="{HEIGHT - PAD + 14}" font-size="10" '
                     f'text-anchor="middle">{escape(label)}</text>')
    for j, (name, colour, _values) in enumerate(series):
        parts.append(f'<rect x="{PAD + j * 130}" y="8" width="10" height="10" '
                     f'fill="{colour}"/><text x="{PAD + j * 130 + 14}" y="17" '
                     f'font-size="11">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def trend_chart(found: InsightsReport) -> str:
    weeks = [point.week for point in found.trend]
    return _bars("deployments and failed changes per week", weeks,
                 [("deployments", BLUE, [float(p.deployments) for p in found.trend]),
                  ("failed changes", RED, [float(p.failures) for p in found.trend])], "trend")


def lead_time_chart(found: InsightsReport) -> str:
    counts = [0.0] * len(BUCKETS)
    for value in found.lead_times:
        counts[next(i for i, (bound, _l) in enumerate(BUCKETS) if value < bound)] += 1
    return _bars("lead time for changes: how many deployments took how long",
                 [label for _b, label in BUCKETS], [("deployments", BLUE, counts)], "lead-time")


def failure_chart(found: InsightsReport) -> str:
    causes = Counter(failure.cause for failure in found.failures)
    labels = sorted(causes) or ["none"]
    return _bars("failed changes by cause", labels,
                 [("failed changes", RED, [float(causes.get(c, 0)) for c in labels])],
                 "failures")


def _spread(figure: Spread) -> str:
    return "-" if figure.median is None else f"{span(figure.median)} / {span(figure.p90)}"


def _row(group: GroupInsights) -> str:
    rate = ("-" if group.change_failure_rate is None
            else f"{group.change_failure_rate:.0%} ({group.failures}/{group.attempts})")
    label = "all" if group.by == "all" else f"{group.by.replace('_', ' ')} {group.name}"
    approval = group.stages.get("approval", Spread())
    cells = (label, str(group.deployments), f"{group.deployments_per_week:g}",
             _spread(group.lead_time), rate, _spread(group.restore_time), _spread(approval))
    return "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in cells) + "</tr>"


STYLE = """body{font-family:sans-serif;margin:24px;color:#1a202c}
table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #cbd5e0;padding:4px 8px;
text-align:left;font-size:13px}th{background:#edf2f7}.charts{display:flex;flex-wrap:wrap;
gap:16px}figure{margin:0;border:1px solid #e2e8f0;padding:8px}figcaption{font-size:13px;
font-weight:bold}"""


def html_report(found: InsightsReport) -> str:
    """The whole page: title and window, the figures per group, the three charts."""
    window = f"{found.since:%Y-%m-%d %H:%M} → {found.until:%Y-%m-%d %H:%M} UTC"
    filters = ", ".join(f"{k} {v}" for k, v in found.filters.items()) or "every application"
    header = ("<tr>" + "".join(f"<th>{h}</th>" for h in (
        "group", "deployments", "per week", "lead time (median / p90)", "change failure rate",
        "time to restore (median / p90)", "approval wait (median / p90)")) + "</tr>")
    stages = "".join(
        f"<tr><td>{escape(stage)}</td><td>{figure.count}</td><td>{_spread(figure)}</td></tr>"
        for stage, figure in (found.group("all", "all") or GroupInsights(by="all", name="all"))
        .stages.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Slipway insights</title>
<style>{STYLE}</style></head><body>
<h1>Slipway insights</h1>
<p>{escape(window)} · {escape(filters)} · a change counts as failed when it rolled back, failed,
or was rolled back or fixed within {span(found.failure_window_seconds)}</p>
<table id="groups">{header}{"".join(_row(g) for g in found.groups)}</table>
<div class="charts">
<figure><figcaption>Deployments and failed changes per week</figcaption>{trend_chart(found)}
</figure>
<figure><figcaption>Lead time distribution</figcaption>{lead_time_chart(found)}</figure>
<figure><figcaption>Failed changes by cause</figcaption>{failure_chart(found)}</figure>
</div>
<h2>Release duration by stage (every release)</h2>
<table id="stages"><tr><th>stage</th><th>releases</th><th>median / p90</th></tr>{stages}</table>
</body></html>
"""


CSV_STAGES = ("build", "approval", "rollout", "total")


def to_csv(found: InsightsReport) -> str:
    """One row per group; durations in seconds, empty where there is no value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["by", "name", "deployments", "deployments_per_week", "lead_time_median_s",
              "lead_time_p90_s", "attempts", "failures", "change_failure_rate",
              "restore_median_s", "restore_p90_s", "self_restored"]
    writer.writerow(header + [f"{stage}_{kind}_s" for stage in CSV_STAGES
                              for kind in ("median", "p90")])

    def value(number: float | None) -> str:
        return "" if number is None else f"{number:g}"

    for group in found.groups:
        stages = [value(getattr(group.stages.get(stage, Spread()), kind))
                  for stage in CSV_STAGES for kind in ("median", "p90")]
        writer.writerow([group.by, group.name, group.deployments, f"{group.deployments_per_week:g}",
                         value(group.lead_time.median), value(group.lead_time.p90),
                         group.attempts, group.failures, value(group.change_failure_rate),
                         value(group.restore_time.median), value(group.restore_time.p90),
                         group.self_restored, *stages])
    return out.getvalue()
