"""Candidate against baseline on the same examples, and the release verdict.

Both models' outputs are aligned by example id; every metric's change gets a paired bootstrap
interval (the same resampled examples for both models), and accuracy gets McNemar's exact test.
The release criteria of sftline.yaml turn those intervals into `pass`, `fail` or `inconclusive`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from sftline.config import ReleaseConfig, ReleaseCriterion
from sftline.contract.metrics import higher_is_better
from sftline.contract.spec import Contract
from sftline.errors import ComparisonError
from sftline.evals import metrics as m
from sftline.evals.scoring import OVERALL, Output, metric_functions, outcomes, slices, subset

Verdict = Literal["pass", "fail", "inconclusive"]

VERDICT_EXIT_CODES: dict[Verdict, int] = {"pass": 0, "fail": 3, "inconclusive": 4}
"""Exit status of a command that gives a release verdict. 1 stays an error (a bad config, a missing
model) and 2 a usage error, so a script can tell "the candidate may not ship" from "it broke"."""


def align(baseline: Sequence[Output], candidate: Sequence[Output]) -> tuple[list[Output], list[Output]]:
    """The examples both evaluations scored, in the candidate's order."""
    by_id = {o.example_id: o for o in baseline}
    pairs = [(by_id[o.example_id], o) for o in candidate if o.example_id in by_id]
    if not pairs:
        raise ComparisonError("the two evaluations share no examples; evaluate both on the same dataset")
    return [a for a, _ in pairs], [b for _, b in pairs]


def compare(
    baseline: Sequence[Output],
    candidate: Sequence[Output],
    contract: Contract,
    *,
    baseline_labels: Sequence[str] | None = None,
    candidate_labels: Sequence[str] | None = None,
    slice_keys: Sequence[str] | None = None,
    replicates: int = m.N_BOOTSTRAP,
    seed: int = 0,
) -> dict[str, Any]:
    """{"n", "overall": {metric: Difference}, "slices": {...}, "mcnemar": {...}, "mcnemar_by_slice"}."""
    base_out, cand_out = align(baseline, candidate)
    a = outcomes(base_out, contract, baseline_labels)
    b = outcomes(cand_out, contract, candidate_labels)
    result: dict[str, Any] = {"n": len(cand_out), "overall": {}, "slices": {}, "mcnemar_by_slice": {}}
    for name, index in slices(b, slice_keys).items():
        part_a, part_b = subset(a, index), subset(b, index)
        fa, fb = metric_functions(part_a, contract), metric_functions(part_b, contract)
        weights = m.bootstrap_weights(len(index), replicates=replicates, seed=seed)
        diffs = {
            metric: m.paired_difference(fa[metric], fb[metric], weights).as_dict()
            for metric in fb
            if metric in fa
        }
        test = m.mcnemar(part_a.columns["correct"].tolist(), part_b.columns["correct"].tolist())
        if name == OVERALL:
            result["overall"] = diffs
            result["mcnemar"] = test
        else:
            result["slices"][name] = diffs
            result["mcnemar_by_slice"][name] = test
    return result


def _targets(criterion: ReleaseCriterion, release: ReleaseConfig, available: Sequence[str]) -> list[str]:
    if criterion.slices == "overall":
        return [OVERALL]
    if criterion.slices == "critical":
        return list(release.critical_slices)
    if criterion.slices == "all":
        return [OVERALL, *available]
    return list(criterion.slices)


def _describe(criterion: ReleaseCriterion) -> str:
    bounds = []
    if criterion.max_drop is not None:
        bounds.append(f"max_drop {criterion.max_drop:g}")
    if criterion.min is not None:
        bounds.append(f"min {criterion.min:g}")
    if criterion.max is not None:
        bounds.append(f"max {criterion.max:g}")
    where = criterion.slices if isinstance(criterion.slices, str) else ", ".join(criterion.slices)
    return f"{criterion.metric} {' '.join(bounds)} ({where})"


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


def _check_drop(metric: str, where: str, diff: dict[str, Any], allowed: float) -> tuple[str, str]:
    """Worsening = -delta (or +delta where lower is better), compared with `allowed` over the
    change's whole interval; without an interval nothing is decided (the point alone is noise)."""
    sign = -1 if higher_is_better(metric) else 1
    delta, low, high = diff["delta"], diff["low"], diff["high"]
    if _missing(delta):
        return "inconclusive", f"{metric} on {where} is undefined for one of the models"
    if _missing(low) or _missing(high):
        return (
            "inconclusive",
            f"{metric} on {where} changed {delta:+.4f} but has no bootstrap interval to judge it by; "
            "more examples would decide",
        )
    # The worsening's interval: the change's interval, flipped where a fall is the worsening.
    worst_case = max(low * sign, high * sign)
    best_case = min(low * sign, high * sign)
    shown = f"{metric} on {where} changed {delta:+.4f} (95% CI {low:+.4f} to {high:+.4f})"
    if best_case > allowed:
        return "fail", f"{shown}: worse by more than the allowed {allowed:g}"
    if worst_case <= allowed:
        return "pass", f"{shown}: within the allowed drop {allowed:g}"
    return (
        "inconclusive",
        f"{shown}: the interval straddles the allowed drop {allowed:g}; more examples would decide",
    )


def combine(outcomes: Iterable[str]) -> str:
    """One verdict from several: any fail fails, else any inconclusive is inconclusive, else pass."""
    seen = set(outcomes)
    return "fail" if "fail" in seen else "inconclusive" if "inconclusive" in seen else "pass"


def verdict(
    comparison: dict[str, Any], candidate_metrics: dict[str, Any], release: ReleaseConfig
) -> dict[str, Any]:
    """{"verdict": pass|fail|inconclusive, "reasons": [...], "checks": [...]} from the criteria."""
    checks: list[dict[str, Any]] = []
    slice_names = sorted(candidate_metrics["slices"])
    for criterion in release.criteria:
        for where in _targets(criterion, release, slice_names):
            values = (
                candidate_metrics["overall"] if where == OVERALL else candidate_metrics["slices"].get(where)
            )
            diffs = comparison["overall"] if where == OVERALL else comparison["slices"].get(where)
            base = {"criterion": _describe(criterion), "slice": where, "metric": criterion.metric}
            if values is None:
                checks.append({**base, "outcome": "inconclusive", "detail": f"no slice {where} in the data"})
                continue
            if criterion.metric not in values:
                continue  # a metric this task does not have (schema_compliance of a label task)
            value = values[criterion.metric]["value"]
            if criterion.min is not None or criterion.max is not None:
                if value is None:
                    checks.append(
                        {**base, "outcome": "inconclusive", "detail": f"{criterion.metric} undefined"}
                    )
                elif criterion.min is not None and value < criterion.min:
                    detail = (
                        f"{criterion.metric} on {where} is {value:.4f}, below the minimum {criterion.min:g}"
                    )
                    checks.append({**base, "outcome": "fail", "detail": detail})
                elif criterion.max is not None and value > criterion.max:
                    detail = (
                        f"{criterion.metric} on {where} is {value:.4f}, above the maximum {criterion.max:g}"
                    )
                    checks.append({**base, "outcome": "fail", "detail": detail})
                else:
                    checks.append(
                        {**base, "outcome": "pass", "detail": f"{criterion.metric} on {where} is {value:.4f}"}
                    )
            if criterion.max_drop is not None:
                if diffs is None or criterion.metric not in diffs:
                    checks.append(
                        {**base, "outcome": "inconclusive", "detail": "the baseline lacks this metric"}
                    )
                    continue
                outcome, detail = _check_drop(
                    criterion.metric, where, diffs[criterion.metric], criterion.max_drop
                )
                checks.append({**base, "outcome": outcome, "detail": detail})
    if not checks:
        # Fail closed: criteria that all miss this task (schema_compliance on a label task, critical
        # slices where none are set) approve nothing.
        skipped = "; ".join(_describe(c) for c in release.criteria)
        measured = ", ".join(candidate_metrics["overall"])
        reason = f"no release criterion applied (skipped: {skipped}); this evaluation measures {measured}"
        return {"verdict": "inconclusive", "reasons": [reason], "checks": []}
    decision = combine(c["outcome"] for c in checks)
    reasons = [c["detail"] for c in checks if c["outcome"] == decision] if decision != "pass" else []
    return {"verdict": decision, "reasons": reasons, "checks": checks}


def worst_examples(
    outputs: Sequence[Output], contract: Contract, slice_names: Sequence[str], *, per_slice: int = 5
) -> dict[str, list[dict[str, Any]]]:
    """The wrong answers of each named slice, most confident first (the most misleading errors)."""
    outcome = outcomes(outputs, contract)
    index_of = slices(outcome)
    result: dict[str, list[dict[str, Any]]] = {}
    for name in slice_names:
        index = index_of.get(name)
        if index is None:
            continue
        wrong = [int(i) for i in index if not outcome.columns["correct"][i]]
        confidence = outcome.columns.get("confidence")
        if confidence is not None:
            wrong.sort(key=lambda i: -float(confidence[i]))
        result[name] = [
            {
                "example_id": outputs[i].example_id,
                "prompt": outputs[i].prompt,
                "target": outputs[i].target,
                "output": outputs[i].output,
                "confidence": outputs[i].confidence,
            }
            for i in wrong[:per_slice]
        ]
    return result


def failing_slices(
    metrics: dict[str, Any], checks: Sequence[dict[str, Any]] | None, *, count: int = 3
) -> list[str]:
    """Slices a verdict failed or could not pass; without a verdict, the `count` least accurate."""
    if checks:
        return sorted({c["slice"] for c in checks if c["outcome"] != "pass"})
    ranked = sorted(
        (
            (v["accuracy"]["value"], k)
            for k, v in metrics["slices"].items()
            if v["accuracy"]["value"] is not None
        )
    )
    return [name for _, name in ranked[:count]] or [OVERALL]
