"""The eval report rendered from a hand-built report dict."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser
from typing import Any

from sftline.config import ReleaseConfig
from sftline.contract.spec import Contract, OutputFormat
from sftline.evals.compare import compare, failing_slices, verdict, worst_examples
from sftline.evals.scoring import Output, confusion, outcomes, score
from sftline.reports.eval import render_eval_report

VOID = {"meta", "br", "hr", "img", "input", "link"}


def estimate(value: float | None, low: float | None = None, high: float | None = None) -> dict[str, Any]:
    return {"value": value, "low": low, "high": high, "n": 200}


def difference(baseline: float, candidate: float, low: float, high: float, p: float) -> dict[str, Any]:
    return {
        "baseline": baseline,
        "candidate": candidate,
        "delta": candidate - baseline,
        "low": low,
        "high": high,
        "p_value": p,
        "n": 200,
    }


def reliability_bins() -> list[dict[str, Any]]:
    """5 bins; the two lowest are empty."""
    rows = [(0, None, None), (0, None, None), (10, 0.5, 0.45), (40, 0.7, 0.66), (150, 0.95, 0.93)]
    return [
        {"low": i / 5, "high": (i + 1) / 5, "count": count, "confidence": confidence, "accuracy": accuracy}
        for i, (count, confidence, accuracy) in enumerate(rows)
    ]


def full_report() -> dict[str, Any]:
    metrics = {
        "n": 200,
        "overall": {
            "accuracy": estimate(0.9, 0.85, 0.94),
            "ece": estimate(0.032, 0.021, 0.04),
            "output_tokens": estimate(12.34, 11.0, 13.5),
            "latency_ms": estimate(85.25, None, None),
            "macro_f1": estimate(None),
        },
        "slices": {
            "domain=banking": {"accuracy": estimate(0.95, 0.9, 0.99)},
            "domain=travel": {"accuracy": estimate(0.8, 0.7, 0.88)},
        },
        "reliability": reliability_bins(),
    }
    baseline_metrics = {
        "n": 200,
        "overall": {"accuracy": estimate(0.5, 0.43, 0.57)},
        "slices": {
            "domain=banking": {"accuracy": estimate(0.97, 0.93, 1.0)},
            "domain=travel": {"accuracy": estimate(0.03, 0.0, 0.07)},
        },
    }
    reason = "accuracy on domain=banking fell 2.1 points (95% CI -3.0 to -1.2), more than the allowed 1.0"
    return {
        "title": "sftline eval: run-0003",
        "sections": [
            {
                "evaluation": "eval-0004",
                "model": "run-0003",
                "dataset": "clinc-test@v1",
                "task": "classify",
                "n": 5500,
                "created_at": "2026-11-22T07:00:00",
                "seconds": 12.5,
                "settings": {"sample": None, "batch_size": 32, "slices": ["domain"]},
                "metrics": metrics,
                "confusion": {
                    "labels": ["balance", "transfer", "oos"],
                    "matrix": [[50, 3, 1], [2, 40, 0], [0, 5, 99]],
                    "pairs": [
                        {"target": "oos", "prediction": "transfer", "count": 5},
                        {"target": "balance", "prediction": "transfer", "count": 3},
                    ],
                },
                "worst": {
                    "domain=banking": [
                        {
                            "example_id": "ex-7",
                            "prompt": "what is <script>alert(1)</script> my balance",
                            "target": "balance",
                            "output": "transfer",
                            "confidence": 0.97,
                        }
                    ]
                },
                "baseline": {"model": "minilm-l6", "evaluation": "eval-0002", "metrics": baseline_metrics},
                "comparison": {
                    "baseline": "minilm-l6",
                    "candidate": "run-0003",
                    "overall": {"accuracy": difference(0.5, 0.9, 0.38, 0.42, 0.002)},
                    "slices": {
                        "domain=banking": {"accuracy": difference(0.971, 0.95, -0.03, -0.012, 0.01)},
                        "domain=travel": {"accuracy": difference(0.03, 0.8, 0.7, 0.84, 0.002)},
                    },
                    "mcnemar": {"baseline_only": 12, "candidate_only": 300, "p_value": 1e-30},
                    "verdict": {
                        "verdict": "fail",
                        "reasons": [reason],
                        "checks": [
                            {
                                "criterion": "accuracy max_drop 0.01 (critical)",
                                "slice": "domain=banking",
                                "metric": "accuracy",
                                "outcome": "fail",
                                "detail": reason,
                            },
                            {
                                "criterion": "accuracy max_drop 0.01 (overall)",
                                "slice": "overall",
                                "metric": "accuracy",
                                "outcome": "pass",
                                "detail": "accuracy on overall changed +0.4000",
                            },
                        ],
                    },
                },
            }
        ],
    }


def minimal_report() -> dict[str, Any]:
    """Only the keys every section has."""
    report = full_report()
    section = report["sections"][0]
    for key in ("confusion", "worst", "baseline", "comparison"):
        del section[key]
    del section["metrics"]["reliability"]
    return report


class TagChecker(HTMLParser):
    """Fails on a closing tag that does not close the innermost open element."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()


def assert_well_formed(page: str) -> None:
    checker = TagChecker()
    checker.feed(page)
    checker.close()
    assert checker.open == []


def row_of(page: str, metric: str) -> list[str]:
    """The cells of the overall metrics table's row for `metric`."""
    match = re.search(rf"<tr><td>{metric}</td>(.*?)</tr>", page, re.S)
    assert match, metric
    return re.findall(r"<td[^>]*>(.*?)</td>", match.group(1), re.S)


def test_the_verdict_its_reasons_and_checks_are_shown() -> None:
    page = render_eval_report(full_report())
    assert '<div class="verdict fail">Release verdict: <strong>fail</strong>' in page
    assert "accuracy on domain=banking fell 2.1 points (95% CI -3.0 to -1.2)" in page
    assert '<td class="fail">fail</td>' in page and '<td class="pass">pass</td>' in page
    assert "12 examples only" in page and "p = 1.0e-30" in page


def test_rates_are_percentages_and_means_plain_numbers() -> None:
    page = render_eval_report(full_report())
    # value, 95% CI, baseline, change, CI of the change, p-value
    assert row_of(page, "accuracy") == [
        "90.0%",
        "85.0% to 94.0%",
        "50.0%",
        "+40.0 pts",
        "+38.0 pts to +42.0 pts",
        "0.002",
    ]
    assert row_of(page, "ece")[:2] == ["3.2%", "2.1% to 4.0%"]
    assert row_of(page, "output_tokens")[:2] == ["12.3", "11.0 to 13.5"]
    assert row_of(page, "latency_ms")[:2] == ["85.2", "–"]
    assert row_of(page, "macro_f1") == ["–"] * 6
    assert 'class="num better">+40.0 pts' in page


def test_slices_are_bars_with_whiskers_and_baseline_markers_worst_first() -> None:
    page = render_eval_report(full_report())
    assert page.count('class="bar"') == 2
    assert page.count('class="whisker"') == 2
    assert page.count('class="marker"') == 2
    assert page.index(">domain=travel</text>") < page.index(">domain=banking</text>")
    assert "95.0% (n 200; -2.1 pts)" in page


def test_confusion_matrix_and_reliability_diagram() -> None:
    page = render_eval_report(full_report())
    assert page.count('class="cell"') == 9
    assert '<td>oos</td><td>transfer</td><td class="num">5</td>' in page
    assert page.count('class="bin"') == 3  # the two empty bins draw no bar
    assert page.count('class="count"') == 5 and page.count('class="diagonal"') == 1
    assert "ECE 3.2% (95% CI 2.1% to 4.0%)" in page


def test_text_is_escaped() -> None:
    page = render_eval_report(full_report())
    assert "<script>" not in page
    assert "what is &lt;script&gt;alert(1)&lt;/script&gt; my balance" in page
    assert_well_formed(page)


def test_a_report_without_optional_keys_leaves_those_parts_out() -> None:
    page = render_eval_report(minimal_report())
    assert_well_formed(page)
    assert "90.0%" in page and "2026-11-22T07:00:00" in page and "5,500" in page
    for absent in (
        "Release verdict",
        "Confusion matrix",
        "Reliability",
        "Worst examples",
        "McNemar",
        "change",
    ):
        assert absent not in page, absent
    assert page.count('class="bar"') == 2 and 'class="marker"' not in page
    assert row_of(page, "accuracy") == ["90.0%", "85.0% to 94.0%"]


def test_undefined_header_values_show_a_dash() -> None:
    report = copy.deepcopy(minimal_report())
    section = report["sections"][0]
    section.update(task=None, seconds=None, n=None)
    section["metrics"]["slices"] = {}
    page = render_eval_report(report)
    assert "<p>– &middot; n – &middot; 2026-11-22T07:00:00 &middot; –" in page
    assert "per slice" not in page


def test_renders_what_the_scoring_functions_produce() -> None:
    """The shapes `score`, `compare`, `verdict`, `confusion` and `worst_examples` return."""
    contract = Contract(
        task="classify", output=OutputFormat(kind="labels", labels=["a", "b", "oos"]), abstention="oos"
    )

    def outputs(right: list[bool], domain: str) -> list[Output]:
        return [
            Output(
                example_id=f"{domain}-{i}",
                target="a",
                output="a" if ok else "b",
                prompt="<b>hi</b>",
                tags={"domain": domain},
                confidence=0.9 - 0.1 * (i % 3),
            )
            for i, ok in enumerate(right)
        ]

    base = outputs([True] * 50, "banking") + outputs([False] * 50, "travel")
    cand = outputs([i >= 10 for i in range(50)], "banking") + outputs([i < 35 for i in range(50)], "travel")
    metrics = score(cand, contract, replicates=100)
    comparison = compare(base, cand, contract, replicates=100)
    comparison.update(baseline="b0", candidate="c1")
    comparison["verdict"] = verdict(comparison, metrics, ReleaseConfig(critical_slices=["domain=banking"]))
    section = {
        "evaluation": "eval-0002",
        "model": "c1",
        "dataset": "d@v1",
        "task": "classify",
        "n": len(cand),
        "created_at": "2026-11-22T07:00:00",
        "seconds": 1.0,
        "settings": {"replicates": 100},
        "metrics": metrics,
        "confusion": confusion(outcomes(cand, contract)),
        "baseline": {
            "model": "b0",
            "evaluation": "eval-0001",
            "metrics": score(base, contract, replicates=100),
        },
        "comparison": comparison,
        "worst": worst_examples(cand, contract, failing_slices(metrics, comparison["verdict"]["checks"])),
    }
    page = render_eval_report({"title": "sftline eval: c1", "sections": [section]})
    assert_well_formed(page)
    assert '<div class="verdict fail">' in page and "&lt;b&gt;hi&lt;/b&gt;" in page
    value, ci, baseline, delta = row_of(page, "accuracy")[:4]
    assert (value, baseline, delta) == ("75.0%", "50.0%", "+25.0 pts")
    assert re.fullmatch(r"\d+\.\d% to \d+\.\d%", ci)
    assert page.count('class="bar"') == 2 and page.count('class="cell"') == 4
