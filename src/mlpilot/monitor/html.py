"""Render a :class:`~mlpilot.monitor.report.DriftReport` as one self-contained HTML page.

Inline CSS and inline SVG only: no scripts, fonts or images to fetch, so the file opens offline and can be
attached to a ticket. Every text value is HTML-escaped.
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING

from mlpilot.monitor.drift import FeatureDrift
from mlpilot.monitor.performance import MetricValue

if TYPE_CHECKING:
    from mlpilot.monitor.report import DriftReport

__all__ = ["render_html"]

_REF, _CUR, _BAD = "#4c78a8", "#f58518", "#d62728"
_CSS = """

body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:6px 0}
td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}.bad{color:#d62728;font-weight:600}.muted{color:#777}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px;width:340px}
.card h3{font-size:14px;margin:0 0 4px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
li{margin:3px 0}
"""


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    if x != 0 and abs(x) < 10**-(digits):
        return f"{x:.1e}"
    return f"{x:.{digits}g}"


def _histogram_svg(h: dict[str, object], width: int = 320, height: int = 120) -> str:
    ref = [float(v) for v in h.get("reference", [])]  # type: ignore[attr-defined]
    cur = [float(v) for v in h.get("current", [])]  # type: ignore[attr-defined]
    if not ref or not cur:
        return '<p class="muted">no distribution to plot</p>'
    top = max(max(ref), max(cur), 1e-12)
    n = len(ref)
    plot_h = height - 22
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    if h.get("kind") == "numeric":
        edges = [float(v) for v in h["edges"]]  # type: ignore[attr-defined]
        step = width / n
        for series, color, opacity in ((ref, _REF, "0.45"), (cur, _CUR, "0.45")):
            for i, v in enumerate(series):
                bar = plot_h * v / top
                parts.append(
                    f'<rect x="{i * step:.1f}" y="{plot_h - bar:.1f}" width="{step:.1f}" height="{bar:.1f}" '
                    f'fill="{color}" fill-opacity="{opacity}"/>'
                )
        parts.append(f'<text x="0" y="{height - 4}" font-size="10">{escape(_fmt(edges[0]))}</text>')
        parts.append(
            f'<text x="{width}" y="{height - 4}" font-size="10" text-anchor="end">{escape(_fmt(edges[-1]))}</text>'
        )
    else:
        labels = [str(v) for v in h.get("labels", [])]  # type: ignore[attr-defined]
        group = width / n
        bar_w = group * 0.4
        for i, (a, b) in enumerate(zip(ref, cur, strict=True)):
            for j, (v, color) in enumerate(((a, _REF), (b, _CUR))):
                bar = plot_h * v / top
                x = i * group + group * 0.1 + j * bar_w
                parts.append(
                    f'<rect x="{x:.1f}" y="{plot_h - bar:.1f}" width="{bar_w:.1f}" height="{bar:.1f}" fill="{color}"/>'
                )
            if n <= 12:
                parts.append(
                    f'<text x="{i * group + group / 2:.1f}" y="{height - 4}" font-size="10" '
                    f'text-anchor="middle">{escape(labels[i][:10])}</text>'
                )
    parts.append("</svg>")
    return "".join(parts)


def _scores_svg(features: list[FeatureDrift], width: int = 760) -> str:
    rows = [f for f in features if math.isfinite(f.effect_size)]
    if not rows:
        return '<p class="muted">no drift scores</p>'
    line = 18
    label_w = 200
    height = line * len(rows) + 10
    top = max(max(min(f.effect_size, 1e6) for f in rows), max(f.threshold for f in rows), 1e-12)
    scale = (width - label_w - 190) / top  # room right of the longest bar for its value and name
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for i, f in enumerate(rows):
        y = i * line + 4
        color = _BAD if f.drifted else _REF
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 12}" font-size="11" text-anchor="end">{escape(f.label[:32])}</text>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y + 2}" width="{min(f.effect_size, 1e6) * scale:.1f}" '
            f'height="{line - 6}" '
            f'fill="{color}"/>'
        )
        tx = label_w + f.threshold * scale
        parts.append(
            f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{y}" y2="{y + line - 2}" stroke="#222" stroke-dasharray="2,2"/>'
        )
        parts.append(
            f'<text x="{label_w + min(f.effect_size, 1e6) * scale + 4:.1f}" y="{y + 12}" font-size="10">'
            f"{escape(_fmt(f.effect_size))} {escape(f.effect_name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _segments_svg(
    name: str, current: dict[str, dict[str, MetricValue]], reference: dict[str, dict[str, MetricValue]]
) -> str:
    keys = [k for k in current if name in current[k]]
    if not keys:
        return ""
    width, label_w, line = 760, 200, 22
    values = [m.value for k in keys for m in (current[k][name], reference.get(k, {}).get(name)) if m is not None]
    lows = [m.low for k in keys for m in (current[k][name], reference.get(k, {}).get(name)) if m is not None]
    highs = [m.high for k in keys for m in (current[k][name], reference.get(k, {}).get(name)) if m is not None]
    finite = [v for v in values + lows + highs if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    scale = (width - label_w - 20) / (hi - lo)
    height = line * len(keys) + 24

    def x(v: float) -> float:
        return label_w + (min(max(v, lo), hi) - lo) * scale

    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for i, key in enumerate(keys):
        y = i * line + 12
        parts.append(f'<text x="{label_w - 6}" y="{y + 4}" font-size="11" text-anchor="end">{escape(key[:32])}</text>')
        for m, color, dy in ((reference.get(key, {}).get(name), _REF, -4), (current[key][name], _CUR, 4)):
            if m is None or not math.isfinite(m.value):
                continue
            if math.isfinite(m.low) and math.isfinite(m.high):
                parts.append(
                    f'<line x1="{x(m.low):.1f}" x2="{x(m.high):.1f}" y1="{y + dy}" y2="{y + dy}" stroke="{color}"/>'
                )
            parts.append(f'<circle cx="{x(m.value):.1f}" cy="{y + dy}" r="3.5" fill="{color}"/>')
    parts.append(
        f'<text x="{label_w}" y="{height - 4}" font-size="10">{escape(_fmt(lo))}</text>'
        f'<text x="{width - 20}" y="{height - 4}" font-size="10" '
        f'text-anchor="end">{escape(_fmt(hi))}</text></svg>'
    )
    return "".join(parts)


def _feature_rows(features: list[FeatureDrift]) -> str:
    out = []
    for f in features:
        flagged = f.drifted or f.missing_drifted
        cls = ' class="bad"' if flagged else ""
        missing = f"{_fmt(f.missing_reference * 100, 2)}% → {_fmt(f.missing_current * 100, 2)}%"
        out.append(
            f"<tr><td{cls}>{escape(f.label)}</td><td>{escape(f.kind)}</td><td>{escape(f.test)} "
            f'<span class="muted">{escape(f.method)}</span></td><td>{_fmt(f.statistic)}</td>'
            f"<td>{_fmt(f.p_value)}</td><td>{_fmt(f.q_value)}</td><td>{_fmt(f.effect_size)}</td>"
            f"<td>{_fmt(f.threshold)}</td><td>{missing}</td><td{cls}>{'drift' if flagged else ''}</td>"
            f'<td class="muted">{escape(f.note or ", ".join(f.new_categories[:5]))}</td></tr>'
        )
    return "".join(out)


_FEATURE_HEAD = (
    "<tr><th>feature</th><th>kind</th><th>test</th><th>statistic</th><th>p</th><th>q (BH)</th><th>effect</th>"
    "<th>floor</th><th>missing ref → now</th><th></th><th>notes</th></tr>"
)


def _timeline_svg(metric: str, timeline: list[dict[str, object]], width: int = 640, height: int = 180) -> str:
    """The metric per time bucket of the window as a line with points (buckets without labels are gaps)."""
    from datetime import UTC, datetime

    points: list[tuple[int, float, int]] = []
    for i, bucket in enumerate(timeline):
        value = (bucket.get("metrics") or {}).get(metric)  # type: ignore[attr-defined]
        if isinstance(value, int | float) and math.isfinite(value):
            points.append((i, float(value), int(bucket.get("labeled", 0))))  # type: ignore[call-overload]
    if not points:
        return '<p class="muted">no labeled rows in the window yet</p>'
    low = min(v for _, v, _ in points)
    high = max(v for _, v, _ in points)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    left, right, top, bottom = 48, 12, 10, 28
    n = max(len(timeline) - 1, 1)

    def x(i: int) -> float:
        return left + (width - left - right) * i / n

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1 - (v - low) / (high - low))

    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for v in (low, high):
        parts.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{_fmt(v)}</text>')
    path = " ".join(f"{'M' if k == 0 else 'L'}{x(i):.1f},{y(v):.1f}" for k, (i, v, _) in enumerate(points))
    parts.append(f'<path d="{path}" fill="none" stroke="{_CUR}" stroke-width="2"/>')
    for i, v, labeled in points:
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{_CUR}"><title>{escape(metric)} '
            f"{_fmt(v)} on {labeled:,} labeled rows</title></circle>"
        )
    for i, key, anchor in ((0, "start", "start"), (len(timeline) - 1, "end", "end")):
        moment = timeline[i].get(key)
        if isinstance(moment, int | float):
            stamp = datetime.fromtimestamp(moment / 1000, tz=UTC).strftime("%m-%d %H:%M UTC")
            parts.append(f'<text x="{x(i):.1f}" y="{height - 8}" font-size="10" text-anchor="{anchor}">{stamp}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: DriftReport) -> str:
    """The whole page as a string."""
    features = list(report.features.values())
    drifted = report.drifted_features
    cfg = report.config
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>mlpilot drift report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Drift report</h1>",
        f"<p>reference rows <b>{report.reference_rows:,}</b> · current rows <b>{report.current_rows:,}</b> · "
        f"drifted features: <b "
        f'class="{"bad" if drifted else ""}">{escape(", ".join(drifted) or "none")}</b></p>',
        f'<p class="muted">Benjamini-Hochberg at alpha={cfg.alpha} over every test in this report, '
        "plus effect-size "
        f"floors (numeric {cfg.numeric_effect_floor} SD Wasserstein, categorical "
        f"{cfg.categorical_effect_floor} "
        f"Jensen-Shannon, missing rate {cfg.missing_effect_floor}); seed {cfg.seed}.</p>",
    ]
    out.extend(f'<p class="muted">note: {escape(n)}</p>' for n in report.notes)
    out.append("<h2>Features</h2><table>" + _FEATURE_HEAD + _feature_rows(features))
    if report.prediction is not None:
        out.append(
            _feature_rows([report.prediction]).replace(
                escape(report.prediction.label), "prediction: " + escape(report.prediction.label), 1
            )
        )
    out.append("</table>")
    m = report.multivariate
    if m is not None:
        verdict = '<b class="bad">drift</b>' if m.drifted else "no drift"
        detail = (
            escape(m.note)
            if m.note
            else (
                f"mean reconstruction error {_fmt(m.reference_error)} (held-out reference, "
                f"{m.reference_rows:,} rows) → "
                f"{_fmt(m.current_error)} ({m.current_rows:,} rows); {m.components} of "
                f"{len(m.features)} components; "
                f"z={_fmt(m.statistic)}, p={_fmt(m.p_value)}, q={_fmt(m.q_value)}"
            )
        )
        out.append(f"<h2>Joint distribution (PCA reconstruction)</h2><p>{verdict}: {detail}</p>")
    out.append("<h2>Drift scores</h2>" + _scores_svg(features + ([report.prediction] if report.prediction else [])))
    out.append(
        '<h2>Distributions</h2><p class="legend"><span style="background:#4c78a8"></span>reference'
        '<span style="background:#f58518"></span>current</p><div class="cards">'
    )
    for f in features + ([report.prediction] if report.prediction else []):
        title = f'<h3 class="{"bad" if f.drifted else ""}">{escape(f.feature)}</h3>'
        out.append(f'<div class="card">{title}{_histogram_svg(f.histogram)}</div>')
    out.append("</div>")
    perf = report.performance
    if perf is not None:
        out.append(
            "<h2>Performance</h2><table><tr><th>metric</th><th>reference</th><th>current</th><th>95% CI</th>"
            "<th>rows</th></tr>"
        )
        for name, cur in perf.current.items():
            ref = perf.reference.get(name)
            out.append(
                f"<tr><td>{escape(name)}</td><td>{_fmt(ref.value if ref else None)}</td>"
                f"<td>{_fmt(cur.value)}</td>"
                f"<td>{_fmt(cur.low)} &ndash; {_fmt(cur.high)}</td><td>{cur.n:,}</td></tr>"
            )
        out.append("</table>")
        main = "mae" if perf.task == "regression" else "accuracy"
        if report.timeline:
            out.append(f"<h2>{escape(main)} over time</h2>" + _timeline_svg(main, report.timeline))
        if perf.by_segment:
            out.append(f"<h2>{escape(main)} by segment</h2>")
            out.append(_segments_svg(main, perf.by_segment, perf.reference_by_segment))
    if report.slices:
        out.append("<h2>Slices that moved most</h2><ul>")
        out.extend(f"<li>{escape(s.describe())}</li>" for s in report.slices)
        out.append("</ul>")
    flagged = [s for s in report.segments if s.drifted_features]
    if report.segments:
        out.append(f"<h2>Segments</h2><p>{len(report.segments)} segment values tested; drift in {len(flagged)}.</p>")
        if flagged:
            out.append("<table>" + _FEATURE_HEAD)
            for s in flagged:
                out.append(_feature_rows([s.features[n] for n in s.drifted_features]))
            out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)
