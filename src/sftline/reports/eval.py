"""The evaluation report of `sftline eval` as one self-contained HTML page.

One section per evaluated dataset: the release verdict (with a baseline), every metric overall with
its 95% interval and the change against the baseline, the headline metric per slice, the confusion
matrix, the reliability diagram and the worst examples of the failing slices. Optional parts of a
section are left out when their key is.
"""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment, Undefined, select_autoescape

from sftline.contract.metrics import higher_is_better
from sftline.reports.svg import IntervalBar, heatmap, interval_chart, reliability_diagram

HEADLINE = "accuracy"
"""The metric drawn per slice."""
DASH = "–"
"""Shown for a value that is undefined (None)."""
TEXT_LIMIT = 400  # characters of a prompt or output shown in the worst-examples table

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ r.title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; } td, th { border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { max-width: 320px; white-space: pre-wrap; word-break: break-word; }
code { background: #f4f4f4; padding: 1px 4px; } .muted { color: #777; } section { margin-bottom: 3rem; }
.verdict { padding: .8rem 1rem; border-radius: 4px; font-size: 1.2rem; margin: 1rem 0; }
.verdict.pass { background: #e3f4ea; border-left: 6px solid #2a7; } .verdict.fail { background: #fbe5e5; border-left: 6px solid #c33; }
.verdict.inconclusive { background: #fdf3dc; border-left: 6px solid #d90; }
.pass, .better { color: #2a7; } .fail, .worse { color: #c33; } .inconclusive { color: #b70; }
</style></head><body>
<h1>{{ r.title }}</h1>
{% if r.verdict %}<p class="verdict {{ r.verdict }}">Release verdict over all datasets: <strong>{{ r.verdict }}</strong></p>{% endif %}
{% for v in sections %}{% set s = v.section %}
<section id="section-{{ loop.index }}">
<h2><code>{{ s.model | plain }}</code> on <code>{{ s.dataset | plain }}</code></h2>
<p>{{ s.task | plain }} &middot; n {{ v.n }} &middot; {{ v.created_at }} &middot; {{ v.seconds }}
&middot; evaluation <code>{{ s.evaluation | plain }}</code></p>

{% if v.verdict %}<div class="verdict {{ v.verdict.verdict | plain }}">Release verdict: <strong>{{ v.verdict.verdict | plain }}</strong>
&mdash; <code>{{ v.comparison.candidate | plain }}</code> against <code>{{ v.comparison.baseline | plain }}</code></div>
{% if v.verdict.reasons %}<ul>{% for reason in v.verdict.reasons %}<li class="{{ v.verdict.verdict | plain }}">{{ reason | plain }}</li>{% endfor %}</ul>{% endif %}
{% if v.verdict.checks %}<table><tr><th>criterion</th><th>slice</th><th>metric</th><th>outcome</th><th>detail</th></tr>
{% for c in v.verdict.checks %}<tr><td>{{ c.criterion | plain }}</td><td>{{ c.slice | plain }}</td><td>{{ c.metric | plain }}</td>
<td class="{{ c.outcome | plain }}">{{ c.outcome | plain }}</td><td>{{ c.detail | plain }}</td></tr>{% endfor %}</table>{% endif %}{% endif %}

<h3>Metrics</h3>
<table><tr><th>metric</th><th>value</th><th>95% CI</th>
{% if v.reference %}<th>{{ v.reference_title }} <code>{{ v.reference.model | plain }}</code></th>{% endif %}
{% if v.comparison %}<th>change</th><th>95% CI of the change</th><th>p-value</th>{% endif %}</tr>
{% for row in v.metric_rows %}<tr><td>{{ row.metric }}</td><td class="num">{{ row.value }}</td><td class="num">{{ row.interval }}</td>
{% if v.reference %}<td class="num">{{ row.reference }}</td>{% endif %}
{% if v.comparison %}<td class="num {{ row.tone }}">{{ row.change }}</td><td class="num">{{ row.change_interval }}</td>
<td class="num">{{ row.p_value }}</td>{% endif %}</tr>{% endfor %}</table>
{% if v.mcnemar %}<p>McNemar's exact test on right/wrong answers: {{ v.mcnemar.baseline_only | plain }} examples only
<code>{{ v.comparison.baseline | plain }}</code> got right, {{ v.mcnemar.candidate_only | plain }} only <code>{{ v.comparison.candidate | plain }}</code>;
p = {{ v.mcnemar_p }}.</p>{% endif %}

{% if v.slice_chart %}<h3>{{ headline }} per slice</h3>
<p class="muted">Worst first; bars: {{ headline }} of <code>{{ s.model | plain }}</code>, whiskers: its 95% interval{% if v.reference %},
diamonds: {{ v.reference_title }} <code>{{ v.reference.model | plain }}</code>{% endif %}.</p>
{{ v.slice_chart | safe }}{% endif %}

{% if v.confusion %}<h3>Confusion matrix</h3>
<p class="muted">Rows: target, columns: prediction; the {{ v.confusion.labels | length }} labels with the most errors.
Right answers in blue, confusions in red.</p>
{{ v.confusion_chart | safe }}
{% if v.confusion.pairs %}<table><tr><th>target</th><th>prediction</th><th>count</th></tr>
{% for p in v.confusion.pairs %}<tr><td>{{ p.target | plain }}</td><td>{{ p.prediction | plain }}</td><td class="num">{{ p.count | plain }}</td></tr>{% endfor %}
</table>{% endif %}{% endif %}

{% if v.reliability_chart %}<h3>Reliability</h3>
{{ v.reliability_chart | safe }}
<p class="muted">Accuracy per confidence bin (bars) against perfect calibration (dashed); n: examples per bin.
ECE {{ v.ece }}.</p>{% endif %}

{% if v.worst %}<h3>Worst examples of the failing slices</h3>
{% for name, examples in v.worst %}<h4><code>{{ name }}</code></h4>
{% if examples %}<table><tr><th>example</th><th>prompt</th><th>target</th><th>output</th><th>confidence</th></tr>
{% for x in examples %}<tr><td>{{ x.example_id }}</td><td class="text">{{ x.prompt }}</td><td class="text">{{ x.target }}</td>
<td class="text">{{ x.output }}</td><td class="num">{{ x.confidence }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">no wrong answers</p>{% endif %}{% endfor %}{% endif %}

{% if v.settings %}<h3>Settings</h3>
<table>{% for key, value in v.settings %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>{% endfor %}</table>{% endif %}
</section>
{% endfor %}
<p class="muted">sftline eval report</p>
</body></html>"""


def is_rate(metric: str) -> bool:
    """Token counts and latencies are means in their own units; every other metric is a rate."""
    return not (metric.endswith("_tokens") or metric == "latency_ms")


def number(metric: str, value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value * 100:.1f}%" if is_rate(metric) else f"{value:,.1f}"


def interval(metric: str, low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return DASH
    return f"{number(metric, low)} to {number(metric, high)}"


def change(metric: str, delta: float | None) -> str:
    """A rate's change in percentage points, a mean's in its own units."""
    if delta is None:
        return DASH
    return f"{delta * 100:+.1f} pts" if is_rate(metric) else f"{delta:+,.1f}"


def change_interval(metric: str, diff: dict[str, Any]) -> str:
    low, high = diff.get("low"), diff.get("high")
    return DASH if low is None or high is None else f"{change(metric, low)} to {change(metric, high)}"


def p_value(p: float | None) -> str:
    if p is None:
        return DASH
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def _tone(metric: str, diff: dict[str, Any]) -> str:
    """`better` or `worse` when the change's interval excludes zero, else ""."""
    delta, low, high = diff.get("delta"), diff.get("low"), diff.get("high")
    if delta is None or low is None or high is None or low <= 0 <= high:
        return ""
    return "better" if (delta > 0) == higher_is_better(metric) else "worse"


def _metric_rows(
    overall: dict[str, Any], reference: dict[str, Any] | None, comparison: dict[str, Any] | None
) -> list[dict[str, str]]:
    rows = []
    for metric, est in overall.items():
        diff = (comparison or {}).get("overall", {}).get(metric) or {}
        if diff:
            reference_value = diff.get("baseline")
        elif reference is not None:
            reference_value = (reference["metrics"]["overall"].get(metric) or {}).get("value")
        else:
            reference_value = None
        rows.append(
            {
                "metric": metric,
                "value": number(metric, est.get("value")),
                "interval": interval(metric, est.get("low"), est.get("high")),
                "reference": number(metric, reference_value),
                "change": change(metric, diff.get("delta")),
                "change_interval": change_interval(metric, diff),
                "p_value": p_value(diff.get("p_value")),
                "tone": _tone(metric, diff),
            }
        )
    return rows


def _slice_chart(
    metrics: dict[str, Any], reference: dict[str, Any] | None, comparison: dict[str, Any] | None
) -> str:
    """The headline metric per slice, worst first (undefined values last)."""
    rows = []
    for name, by_metric in metrics.get("slices", {}).items():
        est = by_metric.get(HEADLINE)
        if est is None:
            continue
        marker = None
        if reference is not None:
            marker = ((reference["metrics"].get("slices", {}).get(name) or {}).get(HEADLINE) or {}).get(
                "value"
            )
        diff = ((comparison or {}).get("slices", {}).get(name) or {}).get(HEADLINE) or {}
        note = f"n {est['n']:,}" if est.get("n") is not None else ""
        if diff.get("delta") is not None:
            note += f"; {change(HEADLINE, diff['delta'])}"
        rows.append(IntervalBar(name, est.get("value"), est.get("low"), est.get("high"), marker, note))
    if not rows:
        return ""
    rows.sort(key=lambda row: (row.value is None, row.value or 0.0, row.label))
    return interval_chart(rows, marker_label=reference["model"] if reference else "")


def _plain(value: Any) -> str:
    if value is None:
        return DASH
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _clip(text: Any) -> str:
    shown = _plain(text)
    return shown if len(shown) <= TEXT_LIMIT else shown[:TEXT_LIMIT] + "…"


def _worst(worst: dict[str, list[dict[str, Any]]]) -> list[tuple[str, list[dict[str, str]]]]:
    return [
        (
            name,
            [
                {
                    "example_id": _plain(x.get("example_id")),
                    "prompt": _clip(x.get("prompt")),
                    "target": _clip(x.get("target")),
                    "output": _clip(x.get("output")),
                    "confidence": number("confidence", x.get("confidence")),
                }
                for x in examples
            ],
        )
        for name, examples in worst.items()
    ]


def section_view(section: dict[str, Any]) -> dict[str, Any]:
    """What the template shows of one section: its text formatted, its charts drawn.

    The reference is the baseline when there is one; `sftline eval` without --baseline compares
    with the base model instead (`base` and `sft_change`), shown the same way without a verdict.
    """
    metrics = section["metrics"]
    reference = section.get("baseline") or section.get("base")
    comparison = section.get("comparison") or section.get("sft_change")
    seconds = section.get("seconds")
    view: dict[str, Any] = {
        "section": section,
        "n": DASH if section.get("n") is None else f"{section['n']:,}",
        "created_at": _plain(section.get("created_at")),
        "seconds": DASH if seconds is None else f"{seconds:.1f} s",
        "reference": reference,
        "reference_title": "baseline" if section.get("baseline") else "base model",
        "comparison": comparison,
        "verdict": (comparison or {}).get("verdict"),
        "metric_rows": _metric_rows(metrics.get("overall", {}), reference, comparison),
        "mcnemar": (comparison or {}).get("mcnemar"),
        "slice_chart": _slice_chart(metrics, reference, comparison),
        "confusion": section.get("confusion"),
        "reliability_chart": "",
        "worst": _worst(section.get("worst") or {}),
        "settings": [(str(k), _plain(v)) for k, v in (section.get("settings") or {}).items()],
    }
    if view["mcnemar"]:
        view["mcnemar_p"] = p_value(view["mcnemar"].get("p_value"))
    if view["confusion"]:
        view["confusion_chart"] = heatmap(view["confusion"]["labels"], view["confusion"]["matrix"])
    if metrics.get("reliability"):
        ece = metrics.get("overall", {}).get("ece") or {}
        view["reliability_chart"] = reliability_diagram(metrics["reliability"])
        shown = number("ece", ece.get("value"))
        if ece.get("low") is not None and ece.get("high") is not None:
            shown += f" (95% CI {interval('ece', ece['low'], ece['high'])})"
        view["ece"] = shown
    return view


def render_eval_report(report: dict[str, Any]) -> str:
    """The report of `sftline eval` ({"title", "sections": [...]}) as one self-contained HTML page."""
    environment = Environment(autoescape=select_autoescape(default=True))
    environment.filters["plain"] = lambda value: DASH if isinstance(value, Undefined) else _plain(value)
    return environment.from_string(TEMPLATE).render(
        r=report, sections=[section_view(s) for s in report["sections"]], headline=HEADLINE
    )
