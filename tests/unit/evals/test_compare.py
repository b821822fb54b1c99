"""Paired comparison and the release verdict on hand-built outputs."""

from __future__ import annotations

import pytest

from sftline.config import ReleaseConfig, ReleaseCriterion, parse_config
from sftline.contract.spec import Contract
from sftline.errors import ConfigError
from sftline.evals.compare import align, compare, failing_slices, verdict, worst_examples
from sftline.evals.scoring import Output, score

CONTRACT = Contract(task="classify", output={"kind": "labels", "labels": ["a", "b", "oos"]}, abstention="oos")


def outputs(right: list[bool], *, domain: str = "x", start: int = 0) -> list[Output]:
    """Examples with target `a`; the answer is `a` where `right` else `b`."""
    return [
        Output(
            example_id=f"{domain}-{start + i}",
            target="a",
            output="a" if ok else "b",
            tags={"domain": domain},
            confidence=0.9,
        )
        for i, ok in enumerate(right)
    ]


def judge(baseline: list[Output], candidate: list[Output], release: ReleaseConfig) -> dict:
    comparison = compare(baseline, candidate, CONTRACT, replicates=400)
    return verdict(comparison, score(candidate, CONTRACT, replicates=400), release)


def test_mcnemar_counts_the_discordant_pairs() -> None:
    base = outputs([True, True, False, False, True])
    cand = outputs([True, False, True, True, True])
    result = compare(base, cand, CONTRACT, replicates=50)
    # baseline only right on example 1; candidate only right on 2 and 3: p = 2 * (1 + 3) / 8 = 1.0
    assert result["mcnemar"] == {"baseline_only": 1, "candidate_only": 2, "p_value": 1.0}
    assert result["overall"]["accuracy"]["delta"] == pytest.approx(1 / 5)


def test_a_clearly_better_candidate_passes() -> None:
    base = outputs([i % 2 == 0 for i in range(200)])
    cand = outputs([True] * 200)
    result = judge(base, cand, ReleaseConfig())
    assert result["verdict"] == "pass" and result["reasons"] == []
    accuracy = next(c for c in result["checks"] if c["metric"] == "accuracy")
    assert accuracy["outcome"] == "pass"


def test_a_drop_on_a_critical_slice_fails_with_the_slice_named() -> None:
    # Overall the candidate is better (travel +70 points), but banking falls 30 points.
    base = outputs([True] * 100, domain="banking") + outputs([False] * 100, domain="travel")
    cand = outputs([i >= 30 for i in range(100)], domain="banking") + outputs(
        [i < 70 for i in range(100)], domain="travel"
    )
    release = ReleaseConfig(critical_slices=["domain=banking"])
    result = judge(base, cand, release)
    assert result["verdict"] == "fail"
    assert len(result["reasons"]) == 1 and "domain=banking" in result["reasons"][0]
    by_slice = {(c["slice"], c["metric"]): c["outcome"] for c in result["checks"]}
    assert by_slice[("overall", "accuracy")] == "pass"
    assert by_slice[("domain=banking", "accuracy")] == "fail"


def test_a_small_noisy_difference_is_inconclusive() -> None:
    # 2 discordant pairs out of 10: the interval of the change spans zero.
    base = outputs([True] * 8 + [False, True])
    cand = outputs([True] * 8 + [True, False])
    result = judge(base, cand, ReleaseConfig())
    assert result["verdict"] == "inconclusive"
    assert "straddles" in result["reasons"][0]


@pytest.mark.parametrize("missing", [None, float("nan")])
def test_a_change_without_an_interval_is_inconclusive_however_small(missing: float | None) -> None:
    # A point estimate alone decides nothing: a fall of 0.001 is not a fail, nor a rise a pass.
    def judged(delta: float) -> dict:
        diff = {"baseline": 0.9, "candidate": 0.9 + delta, "delta": delta, "low": missing, "high": missing}
        comparison = {"overall": {"accuracy": {**diff, "p_value": None, "n": 3}}, "slices": {}}
        metrics = {"overall": {"accuracy": {"value": 0.9 + delta}}, "slices": {}}
        return verdict(comparison, metrics, ReleaseConfig())

    fell, rose = judged(-0.001), judged(0.05)
    assert fell["verdict"] == rose["verdict"] == "inconclusive"
    assert fell["reasons"] == [
        "accuracy on overall changed -0.0010 but has no bootstrap interval to judge it by; "
        "more examples would decide"
    ]


def test_absolute_bounds_and_metrics_the_task_lacks() -> None:
    base = outputs([True] * 20)
    cand = outputs([True] * 19 + [False])
    release = ReleaseConfig(
        criteria=[
            ReleaseCriterion(metric="accuracy", min=0.99),
            ReleaseCriterion(metric="schema_compliance", min=1.0),  # no JSON here: skipped
        ]
    )
    result = judge(base, cand, release)
    assert result["verdict"] == "fail"
    assert [c["metric"] for c in result["checks"]] == ["accuracy"]
    assert "0.9500, below the minimum 0.99" in result["reasons"][0]


def test_schema_compliance_below_one_fails_a_json_contract() -> None:
    contract = Contract(output={"kind": "json_schema", "schema": {"type": "object", "required": ["intent"]}})

    def json_outputs(answers: list[str]) -> list[Output]:
        return [Output(example_id=str(i), target='{"intent": "a"}', output=a) for i, a in enumerate(answers)]

    base = json_outputs(['{"intent": "a"}'] * 10)
    cand = json_outputs(['{"intent": "a"}'] * 9 + ['{"label": "a"}'])
    comparison = compare(base, cand, contract, replicates=100)
    result = verdict(comparison, score(cand, contract, replicates=100), ReleaseConfig())
    outcome = {c["metric"]: c["outcome"] for c in result["checks"] if c["slice"] == "overall"}
    assert outcome["schema_compliance"] == "fail"


def test_lower_is_better_metrics_count_a_rise_as_the_drop() -> None:
    base = [Output(example_id=str(i), target="a", output="a", latency_ms=10.0) for i in range(50)]
    cand = [Output(example_id=str(i), target="a", output="a", latency_ms=20.0) for i in range(50)]
    release = ReleaseConfig(criteria=[ReleaseCriterion(metric="latency_ms", max_drop=5.0)])
    result = judge(base, cand, release)
    assert result["verdict"] == "fail" and "latency_ms" in result["reasons"][0]


def test_a_verdict_whose_criteria_all_miss_the_task_is_inconclusive() -> None:
    base, cand = outputs([False] * 20), outputs([True] * 20)  # clearly better, yet nothing is checked
    release = ReleaseConfig(
        criteria=[
            ReleaseCriterion(metric="schema_compliance", min=1.0),  # a label task has no JSON
            ReleaseCriterion(metric="accuracy", slices="critical", max_drop=0.0),  # none are set
        ]
    )
    result = judge(base, cand, release)
    assert result["verdict"] == "inconclusive" and result["checks"] == []
    assert result["reasons"] == [
        "no release criterion applied (skipped: schema_compliance min 1 (overall); "
        "accuracy max_drop 0 (critical)); this evaluation measures accuracy, exact_match, macro_f1, "
        "label_compliance, in_scope_accuracy, abstention_precision, abstention_recall, abstention_rate, "
        "refusal_rate, ece, mean_confidence, stop_rate, output_tokens, verbosity, over_limit_rate, "
        "prompt_tokens, latency_ms"
    ]


def test_release_criteria_are_checked_when_the_config_loads_every_problem_at_once() -> None:
    release = {
        "criteria": [
            {"metric": "accuracy", "max_drop": 0.0},
            {"metric": "acuracy", "max_drop": 0.0},
            {"metric": "schema_complience", "min": 1.0},
            {"metric": "loss", "max": 2.0},
            {"metric": "accuracy", "min": 1.01},
        ]
    }
    with pytest.raises(ConfigError) as error:
        parse_config({"project": "p", "release": release}, "sftline.yaml")
    assert str(error.value).splitlines() == [
        "sftline.yaml: 4 problem(s)",
        "  - release.criteria.1.metric: unknown metric 'acuracy' (did you mean 'accuracy'?)",
        "  - release.criteria.2.metric: unknown metric 'schema_complience' "
        "(did you mean 'schema_compliance'?)",
        "  - release.criteria.3.metric: 'loss' is training's holdout loss, which `sftline eval` does not "
        "measure; use a behaviour metric such as accuracy",
        "  - release.criteria.4: min 1.01 is above 1, the most accuracy can be: "
        "the criterion could never pass",
    ]


def test_a_release_without_criteria_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"project": "p", "release": {"criteria": []}}, "sftline.yaml")
    assert str(error.value).splitlines()[1:] == [
        "  - release.criteria: no criteria; a verdict needs one or more, e.g. {metric: accuracy, max_drop: 0}"
    ]


def test_align_pairs_by_example_id_and_refuses_disjoint_sets() -> None:
    base = outputs([True, False, True])
    cand = list(reversed(outputs([False, True], start=1)))
    a, b = align(base, cand)
    assert [o.example_id for o in a] == [o.example_id for o in b] == ["x-2", "x-1"]
    with pytest.raises(Exception, match="share no examples"):
        align(base, outputs([True], domain="y"))


def test_worst_examples_are_the_most_confident_errors_of_failing_slices() -> None:
    cand = outputs([True, False, False], domain="banking")
    cand[1].confidence, cand[2].confidence = 0.4, 0.8
    metrics = score(cand, CONTRACT, replicates=20)
    names = failing_slices(metrics, None)
    assert names == ["domain=banking"]
    worst = worst_examples(cand, CONTRACT, names)
    assert [w["example_id"] for w in worst["domain=banking"]] == ["banking-2", "banking-1"]


def test_a_suite_file_holds_settings_and_options_override_it(tmp_path) -> None:
    from sftline.stations.release import load_suite

    suite = tmp_path / "suite.yaml"
    suite.write_text("on: [support-gold, support-domain-banking]\nslices: [domain]\nsample: 200\n")
    settings = load_suite(suite, {"on": [], "sample": 50, "max_new_tokens": None})
    assert settings.on == ["support-gold", "support-domain-banking"]  # an empty option keeps the file's
    assert settings.sample == 50 and settings.slices == ["domain"] and settings.max_new_tokens is None
    suite.write_text("on: [gold]\nsampel: 3\nsample: 0\n")
    with pytest.raises(ConfigError) as error:
        load_suite(suite, {})
    assert str(suite) in str(error.value) and "sampel" in str(error.value) and "sample" in str(error.value)
