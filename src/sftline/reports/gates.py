"""The gate report as one self-contained HTML page."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, select_autoescape

from sftline.reports.svg import bar_chart, histogram

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sftline gate report: {{ r.version }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; } td, th { border: 1px solid #ddd; padding: 4px 8px; }
th { background: #f4f4f4; text-align: left; } .passed { color: #2a7; } .failed { color: #c33; }
code { background: #f4f4f4; padding: 1px 4px; } .muted { color: #777; }
</style></head><body>
<h1>Gate report <code>{{ r.version }}</code></h1>
<p class="{{ r.status }}"><strong>{{ r.status }}</strong>: checked {{ r.checked }} =
accepted {{ r.accepted }} + quarantined {{ r.quarantined }}; {{ r.warned }} warned, {{ r.redacted }} redacted.
{% if r.against %}Checked against {{ r.against | join(", ") }}.{% endif %}</p>
{% for failure in r.failures %}<p class="failed">{{ failure }}</p>{% endfor %}
{% for entry in r.left_out %}<p class="muted">Compared: {{ entry.why }}.</p>{% endfor %}
{% if format_why %}<p class="muted">Format: {{ format_why }}.</p>{% endif %}

<h2>Examples by gate and reason</h2>
<table><tr><th>gate</th><th>reason</th><th>blocked</th><th>warned</th><th>redacted</th></tr>
{% for gate, reasons in r.counts.items() %}{% for reason, c in reasons.items() %}
<tr><td>{{ gate }}</td><td>{{ reason }}</td><td>{{ c.blocked }}</td><td>{{ c.warned }}</td><td>{{ c.redacted }}</td></tr>
{% endfor %}{% endfor %}</table>
{{ reasons_chart | safe }}

{% if lengths %}<h2>Lengths ({{ lengths.tokenizer }} tokens)</h2>
<p>max_length {{ lengths.max_length }}; {{ lengths.over_max_length }} over it;
percentiles {% for k, v in lengths.total_tokens.percentiles.items() %}{{ k }} {{ "%.0f" | format(v) }} {% endfor %}</p>
{{ length_chart | safe }}{% endif %}

{% if near %}<h2>Near-duplicate clusters ({{ near.n_clusters }})</h2>
<table><tr><th>representative</th><th>size</th><th>members</th></tr>
{% for c in near.clusters[:30] %}<tr><td>{{ c.representative }}</td><td>{{ c.size }}</td><td>{{ c.members | join(", ") }}</td></tr>{% endfor %}
</table>{% endif %}

{% if contamination and contamination.matches %}<h2>Contamination ({{ contamination.n_matches }} matches)</h2>
<table><tr><th>example</th><th>text</th><th>matched</th><th>held-out text</th><th>kind</th><th>similarity</th></tr>
{% for m in contamination.matches[:50] %}<tr><td>{{ m.example }}</td><td>{{ m.text }}</td><td>{{ m.against }}:{{ m.against_example }}</td>
<td>{{ m.against_text }}</td><td>{{ m.kind }}</td><td>{{ m.similarity }}</td></tr>{% endfor %}</table>{% endif %}

{% if balance %}<h2>Balance</h2>
{% for table, chart in balance_charts %}<h3>{{ table }}</h3>{{ chart | safe }}{% endfor %}
{% if balance.findings %}<p>Below the minimum share (thresholds {{ balance.thresholds }}):
{% for f in balance.findings %}<code>{{ f.slice }}={{ f.value }}</code> {{ f.count }} {% endfor %}</p>{% endif %}{% endif %}

<h2>Flagged examples ({{ [r.flagged | length, 200] | min }} of {{ r.n_flagged }})</h2>
<table><tr><th>example</th><th>where</th><th>action</th><th>gate</th><th>reason</th><th>detail</th></tr>
{% for x in r.flagged[:200] %}{% for reason in x.reasons %}<tr>{% if loop.first %}
<td rowspan="{{ x.reasons | length }}">{{ x.example_id }}</td><td rowspan="{{ x.reasons | length }}">{{ x.location }}</td>
<td rowspan="{{ x.reasons | length }}">{{ x.action }}</td>{% endif %}
<td>{{ reason.gate }}</td><td>{{ reason.reason }}</td><td>{{ reason.detail }}</td></tr>{% endfor %}{% endfor %}</table>
<p class="muted">sftline gate report</p>
</body></html>"""


def gate_report_charts(report: dict[str, Any]) -> dict[str, Any]:
    """The parts of a gate report the page draws or picks out: the reasons' bar chart, the length
    histogram, a bar chart per balance table, and each gate's section (`sftline ui` shows the same
    pieces inside its own pages)."""
    gates = report.get("gates", {})
    reasons = [
        (f"{gate}/{reason}", float(c["blocked"] + c["warned"] + c["redacted"]))
        for gate, rs in report["counts"].items()
        for reason, c in rs.items()
    ]
    lengths = gates.get("lengths")
    length_chart = ""
    if lengths and lengths["total_tokens"]["counts"]:
        length_chart = histogram(
            lengths["total_tokens"]["bins"], lengths["total_tokens"]["counts"], marker=lengths["max_length"]
        )
    balance = gates.get("balance")
    balance_charts = []
    if balance:
        for table, counts in balance["tables"].items():
            balance_charts.append((table, bar_chart([(k, float(v)) for k, v in counts.items()])))
    return {
        "reasons_chart": bar_chart(sorted(reasons, key=lambda x: -x[1])),
        "lengths": lengths,
        "length_chart": length_chart,
        "near": gates.get("near_duplicates"),
        "contamination": gates.get("contamination"),
        "balance": balance,
        "balance_charts": balance_charts,
        "format_why": gates.get("format", {}).get("why") if gates.get("format", {}).get("inferred") else None,
    }


def render_gate_report(report: dict[str, Any]) -> str:
    environment = Environment(autoescape=select_autoescape(default=True))
    return environment.from_string(TEMPLATE).render(r=report, **gate_report_charts(report))
