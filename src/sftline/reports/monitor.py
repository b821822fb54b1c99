"""The monitoring report as one self-contained HTML page (inline SVG, nothing fetched)."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, select_autoescape

from sftline.monitoring.settings import format_duration
from sftline.reports.svg import bar_chart, reliability_diagram

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sftline monitoring: {{ r.model }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; } td, th { border: 1px solid #ddd; padding: 4px 8px; }
th { background: #f4f4f4; text-align: left; } .bad { color: #c33; font-weight: bold; } .ok { color: #2a7; }
code { background: #f4f4f4; padding: 1px 4px; } .muted { color: #777; }
</style></head><body>
<h1>Monitoring <code>{{ r.model }}</code></h1>
<p>{{ r.since[:16] }} to {{ r.at[:16] }} UTC. Serving <code>{{ r.serving.version }}</code>, trained on
<code>{{ r.serving.trained_on }}</code>.</p>

<h2>Alerts</h2>
{% if r.alerts.firing %}<table><tr><th>severity</th><th>alert</th><th>since</th><th>message</th></tr>
{% for a in r.alerts.firing %}<tr><td class="bad">{{ a.severity }}</td><td>{{ a.name }}</td><td>{{ a.fired_at[:16] }}</td><td>{{ a.message }}</td></tr>{% endfor %}
</table>{% else %}<p class="ok">nothing firing</p>{% endif %}
{% for a in r.alerts.resolved %}<p class="ok">resolved: {{ a.name }}</p>{% endfor %}

<h2>Service level indicators</h2>
<table><tr><th>slice</th><th>requests</th><th>success</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th>
<th>contract-invalid</th><th>abstained</th><th>busy s</th><th>cost / 1k ({{ r.cost_model.currency }})</th><th>feedback accuracy</th></tr>
{% for name, s in slices %}<tr><td>{{ name }}</td><td>{{ s.requests }}</td><td>{{ pct(s.success_rate, 2) }}</td>
<td>{{ num(s.latency_ms.p50) }}</td><td>{{ num(s.latency_ms.p95) }}</td><td>{{ num(s.latency_ms.p99) }}</td>
<td>{{ pct(s.contract_invalid_rate) }}</td><td>{{ pct(s.abstention_rate) }}</td><td>{{ num(s.busy_seconds, 1) }}</td>
<td>{{ num(s.cost_per_1k_requests, 4) }}</td>
<td>{% if s.feedback.labelled %}{{ pct(s.feedback.accuracy.value) }} of {{ s.feedback.labelled }}{% else %}-{% endif %}</td></tr>{% endfor %}
</table>
<p>Review rate {{ pct(o.review_rate) }}; newest training data {{ num(o.freshness_days, 1) }} days old.</p>
<h3>Latency (requests per bucket, ms)</h3>
{{ latency_chart | safe }}
{% if o.feedback.labelled %}<h3>Feedback ({{ o.feedback.labelled }} labelled)</h3>
<p>accuracy {{ pct(o.feedback.accuracy.value) }} ({{ pct(o.feedback.accuracy.low) }}-{{ pct(o.feedback.accuracy.high) }}),
macro-F1 {{ pct(o.feedback.macro_f1.value) }}{% if o.feedback.top3_accuracy %}, top-3 {{ pct(o.feedback.top3_accuracy.value) }}{% endif %}{% if o.feedback.ece %}, ECE {{ pct(o.feedback.ece.value) }}{% endif %}</p>
{{ reliability_chart | safe }}{% endif %}

<h2>SLOs and burn rates</h2>
<table><tr><th>SLO</th><th>SLI</th><th>objective</th><th>good</th><th>budget left</th><th>rule</th><th>long window</th><th>short window</th></tr>
{% for s in r.slos %}{% for b in s.burn %}<tr>{% if loop.first %}<td rowspan="{{ s.burn | length }}">{{ s.slo }}</td>
<td rowspan="{{ s.burn | length }}">{{ s.sli }}</td><td rowspan="{{ s.burn | length }}">{{ "%.3f" | format(s.objective * 100) }}%</td>
<td rowspan="{{ s.burn | length }}">{{ pct(s.good_share, 2) }}</td><td rowspan="{{ s.burn | length }}">{{ pct(s.budget_left) }}</td>{% endif %}
<td class="{{ 'bad' if b.firing else '' }}">{{ b.severity }} at {{ b.factor }}x</td>
<td>{{ num(b.burn_long, 1) }}x over {{ span(b.long_s) }} ({{ b.events_long }})</td>
<td>{{ num(b.burn_short, 1) }}x over {{ span(b.short_s) }} ({{ b.events_short }})</td></tr>{% endfor %}{% endfor %}
</table>

<h2>Drift</h2>
{% if r.drift.tests %}<p>Family false-alarm level {{ r.drift.false_alarm_rate }}, each test at {{ "%.4f" | format(r.drift.alpha_per_test) }}
(Bonferroni over {{ r.drift.tests_planned | length }} tests). Reference: {{ r.drift.reference.inputs }} training inputs,
{{ r.drift.reference.answers }} evaluated answers; now: {{ r.drift.current.inputs }} logged inputs, {{ r.drift.current.labelled }} labelled.</p>
<table><tr><th>what</th><th>test</th><th>statistic</th><th>p</th><th>effect</th><th>n now / ref</th><th>drifted</th></tr>
{% for d in r.drift.tests %}<tr><td>{{ d.name }}</td><td>{{ d.test }}</td><td>{{ num(d.statistic, 3) }}</td><td>{{ sci(d.p_value) }}</td>
<td>{{ num(d.effect, 3) }}</td><td>{{ d.n_current }} / {{ d.n_reference }}</td>
<td class="{{ 'bad' if d.drifted else '' }}">{% if d.skipped %}skipped: {{ d.skipped }}{% else %}{{ 'yes' if d.drifted else 'no' }}{% endif %}</td></tr>{% endfor %}
</table>
{% for title, chart in drift_charts %}<h3>{{ title }}</h3>{{ chart | safe }}{% endfor %}
{% if r.drift.novel %}<h3>New inputs, unlike the training data</h3>
{% for c in r.drift.novel %}<p><strong>{{ c.size }} inputs</strong>{% if c.top_words %} ({{ c.top_words | join(", ") }}){% endif %}:</p>
<ul>{% for e in c.examples %}<li>{{ e }}</li>{% endfor %}</ul>{% endfor %}{% endif %}
{% else %}<p class="muted">{{ r.drift.skipped or "no drift test had enough data" }}</p>{% endif %}

<h2>Review queue</h2>
<p>{{ r.review.added }} added by this pass; {% for k, v in r.review.counts.items() %}{{ k }} {{ v }} {% endfor %}</p>
<p class="muted">sftline monitoring report #{{ report_id }}</p>
</body></html>"""


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def _bucket_order(key: str) -> float:
    return float("inf") if key == "+Inf" else float(key)


def _bin_label(b: dict[str, Any]) -> str:
    """A bin's name on a chart: its label, or its range (`(low, high]`, open ends as `<=`/`>`)."""
    if b.get("label") is not None or b.get("bin") is not None:
        return str(b.get("label") if b.get("label") is not None else b.get("bin"))
    low, high = b.get("low"), b.get("high")
    if low is None and high is None:
        return "all"
    if low is None:
        return f"<= {high:.4g}"
    if high is None:
        return f"> {low:.4g}"
    return f"{low:.4g}-{high:.4g}"


def drift_charts(tests: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(title, SVG) per drift test whose details carry bins: the reference's share of each bin
    beside the current share (the first 20 bins). The dashboard's monitoring page draws these too."""
    charts = []
    for test in tests:
        bins = (test.get("details") or {}).get("bins")
        if not bins or test.get("skipped"):
            continue
        items = []
        for b in bins[:20]:
            label = _bin_label(b)
            items.append((f"{label} ref", float(b.get("reference", 0)) * 100))
            items.append((f"{label} now", float(b.get("current", 0)) * 100))
        charts.append((f"{test['name']}: reference against now (% of each)", bar_chart(items, unit="%")))
    return charts


def render_monitor_report(report: dict[str, Any], report_id: int | None = None) -> str:
    env = Environment(autoescape=select_autoescape(default=True))
    overall = report["slis"]["overall"]
    buckets = sorted(overall.get("latency_buckets", {}).items(), key=lambda kv: _bucket_order(kv[0]))
    latency_chart = (
        bar_chart([(f"<= {k} ms", float(v)) for k, v in buckets])
        if buckets
        else "<p><em>no requests</em></p>"
    )
    reliability = overall.get("feedback", {}).get("reliability")
    return env.from_string(TEMPLATE).render(
        r=report,
        o=overall,
        slices=[("overall", overall), *report["slis"]["slices"].items()],
        latency_chart=latency_chart,
        reliability_chart=reliability_diagram(reliability) if reliability else "",
        drift_charts=drift_charts(report["drift"].get("tests") or []),
        pct=_pct,
        num=_num,
        sci=_sci,
        span=format_duration,
        report_id=report_id if report_id is not None else "",
    )
