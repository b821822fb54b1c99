"""`sftline eval` end to end: a tiny chat model and MiniLM, stored outputs, verdicts, the report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy.stats import scoreatpercentile
from sqlalchemy import func, select

from sftline.evals.metrics import bootstrap_weights
from sftline.evals.scoring import DEFAULT_REFUSAL_PHRASES, Output
from sftline.record.schema import EvalOutput, Evaluation
from sftline.record.workspace import Workspace
from tests.support.cli import run_json

pytestmark = pytest.mark.parametrize("record_url", ["sqlite"], indirect=True)

CHAT_TRAIN = ["train", "--base", "tiny", "--data", "intents", "--max-steps", "6", "--batch-tokens", "256"]
CHAT_EVAL = ["--on", "intents", "--sample", "24", "--max-new-tokens", "6"]


def stored_outputs(project: Path, evaluation: str) -> list[Output]:
    with Workspace.find(project) as workspace:
        from sftline.stations.evaluate import load_outputs

        return load_outputs(workspace, evaluation)


def by_hand(n: int, metric: Callable[[list[int]], float], settings: dict[str, Any]) -> dict[str, Any]:
    """The estimate `score` must report: `metric` computed by hand on all `n` examples and on the
    examples each bootstrap resample draws, with scipy's 2.5th and 97.5th percentiles."""
    weights = bootstrap_weights(n, replicates=settings["replicates"], seed=settings["seed"])
    point, *replicates = [metric(np.repeat(np.arange(n), row.astype(int)).tolist()) for row in weights]
    low, high = scoreatpercentile(replicates, [2.5, 97.5])
    close = {"rel": 1e-9, "abs": 0}  # no absolute slack: a confidence here is about 1e-26
    return {
        "value": pytest.approx(point, **close),
        "low": pytest.approx(low, **close),
        "high": pytest.approx(high, **close),
        "n": n,
    }


def mean_over(values: list[float] | list[bool]) -> Callable[[list[int]], float]:
    return lambda drawn: sum(values[i] for i in drawn) / len(drawn)


def calibration_error(confidence: list[float], correct: list[bool]) -> Callable[[list[int]], float]:
    """Over 15 equal-width bins: sum of |sum of (correct - confidence)| per bin, over examples."""

    def ece(drawn: list[int]) -> float:
        gaps = [0.0] * 15
        for i in drawn:
            gaps[min(int(confidence[i] * 15), 14)] += correct[i] - confidence[i]
        return sum(abs(gap) for gap in gaps) / len(drawn)

    return ece


def test_chat_eval_reports_behaviour_stores_outputs_and_reuses_them(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_json(capsys, *CHAT_TRAIN, "--lr", "1e-3")["run"]
    report = run_json(capsys, "eval", run, *CHAT_EVAL, "--html", "eval.html")
    section = report["sections"][0]
    assert section["n"] == 24 and section["method"] == "generate" and not section["reused"]
    overall = section["metrics"]["overall"]
    outputs = stored_outputs(chat_project, section["evaluation"])
    # Every estimate recomputed by hand from the stored outputs.
    correct = [" ".join(o.output.split()).lower() == " ".join(o.target.split()).lower() for o in outputs]
    refused = [any(phrase in o.output.lower() for phrase in DEFAULT_REFUSAL_PHRASES) for o in outputs]
    confidence = [o.confidence or 0.0 for o in outputs]
    expected = {
        "accuracy": mean_over(correct),
        "exact_match": mean_over(correct),
        "refusal_rate": mean_over(refused),
        "stop_rate": mean_over([o.finished for o in outputs]),
        "output_tokens": mean_over([o.output_tokens for o in outputs]),
        "ece": calibration_error(confidence, correct),
        "mean_confidence": mean_over(confidence),
        "prompt_tokens": mean_over([o.prompt_tokens for o in outputs]),
        "latency_ms": mean_over([o.latency_ms for o in outputs]),
    }
    for metric, by_example in expected.items():
        assert overall[metric] == by_hand(24, by_example, section["settings"]), metric
    assert all(o.confidence is not None and 0 < o.confidence < 1 for o in outputs)
    # No answer is longer than the generation limit, and exactly those that reached it did not stop
    # (a stop token takes one of the 6 places and is not counted).
    assert [o.output_tokens <= 6 and o.finished == (o.output_tokens < 6) for o in outputs] == [True] * 24
    # The run's base model was evaluated on the same examples: the change is paired.
    assert section["base"]["model"] == "tiny" and section["sft_change"]["n"] == 24
    assert "<svg" in Path("eval.html").read_text()

    with Workspace.find(chat_project) as workspace, workspace.record.session() as session:
        stored = session.scalar(
            select(func.count())
            .select_from(EvalOutput)
            .join(Evaluation)
            .where(Evaluation.name == section["evaluation"])
        )
        assert stored == 24

    again = run_json(capsys, "eval", run, *CHAT_EVAL)["sections"][0]
    assert again["reused"] and again["evaluation"] == section["evaluation"]
    assert again["metrics"]["overall"] == section["metrics"]["overall"]


def test_batched_generation_answers_as_one_prompt_at_a_time(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Left padding and the attention mask must not change any answer (of the random base model,
    whose answers differ from prompt to prompt)."""
    one = run_json(capsys, "eval", "tiny", *CHAT_EVAL, "--batch-size", "1", "--force")
    many = run_json(capsys, "eval", "tiny", *CHAT_EVAL, "--batch-size", "16", "--force")
    with Workspace.find(chat_project) as workspace:
        from sftline.stations.evaluate import load_outputs

        a = load_outputs(workspace, one["sections"][0]["evaluation"])
        b = load_outputs(workspace, many["sections"][0]["evaluation"])
    assert len({o.output for o in a}) > 1  # the answers differ, so the comparison means something
    assert [o.output for o in a] == [o.output for o in b]
    assert [o.confidence for o in a] == pytest.approx([o.confidence for o in b], rel=1e-3)


def test_classifier_eval_compare_and_verdict(
    classify_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = ["train", "--base", "minilm-l6", "--data", "intents", "--method", "full", "--batch-tokens", "512"]
    first = run_json(capsys, *train, "--max-steps", "2", "--lr", "1e-5")["run"]
    second = run_json(capsys, *train, "--max-steps", "12", "--lr", "1e-3")["run"]

    report = run_json(capsys, "eval", second, "--on", "intents", "--calibrate-on", "intents")
    section = report["sections"][0]
    overall = section["metrics"]["overall"]
    outputs = stored_outputs(classify_project, section["evaluation"])
    # The label metrics' values recomputed by hand from the stored outputs.
    pairs = [(o.target, o.output) for o in outputs]
    f1 = []
    for label in sorted({target for target, _ in pairs}):
        tp = sum(target == answer == label for target, answer in pairs)
        wrong = sum((target == label) != (answer == label) for target, answer in pairs)  # FP + FN
        f1.append(2 * tp / (2 * tp + wrong))
    expected = {
        "accuracy": np.mean([t == a for t, a in pairs]),
        "in_scope_accuracy": np.mean([t == a for t, a in pairs if t != "oos"]),
        "abstention_recall": np.mean([a == "oos" for t, a in pairs if t == "oos"]),
        "macro_f1": np.mean(f1),
        "top_5_accuracy": np.mean([o.target in [label for label, _ in o.ranked[:5]] for o in outputs]),
        "label_compliance": 1.0,  # a classifier can only answer its labels
    }
    assert {metric: overall[metric]["value"] for metric in expected} == pytest.approx(expected)
    assert 0 < expected["accuracy"] < expected["top_5_accuracy"]  # values that tell metrics apart
    assert section["settings"]["temperature"] > 0 and len(section["metrics"]["reliability"]) == 15
    # The zero-shot base is MiniLM as a sentence encoder: label names against the text.
    assert section["base"]["model"] == "minilm-l6"
    assert set(section["confusion"]) == {"labels", "matrix", "pairs"}

    abstaining = run_json(capsys, "eval", second, "--on", "intents", "--abstain-below", "0.999", "--no-base")
    every = abstaining["sections"][0]["metrics"]["overall"]
    assert every["abstention_rate"]["value"] == 1.0 and every["abstention_recall"]["value"] == 1.0

    # Exit 0: twelve steps at lr 1e-3 are clearly more accurate than two at 1e-5.
    compared = run_json(capsys, "eval", "compare", first, second, "--on", "intents", "--html", "cmp.html")
    assert compared["verdict"] == "pass"
    verdict = compared["sections"][0]["comparison"]["verdict"]
    assert verdict["verdict"] == compared["verdict"]
    assert {c["metric"] for c in verdict["checks"]} == {"accuracy"}  # no critical slices, no JSON
    assert "mcnemar" in compared["sections"][0]["comparison"]
    html = Path("cmp.html").read_text()
    assert compared["verdict"] in html


def set_release_criteria(project: Path, criteria: list[dict[str, object]]) -> None:
    path = project / "sftline.yaml"
    config = yaml.safe_load(path.read_text())
    config["release"]["criteria"] = criteria
    path.write_text(yaml.safe_dump(config))


def test_the_exit_status_tells_the_verdict(chat_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """0 pass, 3 fail, 4 inconclusive. The tiny model against itself: every change is exactly 0, and
    its random answers never match an intent's name, so its accuracy is 0."""
    plain = run_json(capsys, "eval", "tiny", *CHAT_EVAL)
    assert "verdict" not in plain  # no baseline, no verdict: exit 0
    # The default criteria: accuracy must not drop (it changes by exactly 0); no JSON to check.
    passed = run_json(capsys, "eval", "tiny", *CHAT_EVAL, "--baseline", "tiny")
    assert passed["verdict"] == "pass"

    set_release_criteria(chat_project, [{"metric": "accuracy", "min": 1.0}])
    failed = run_json(capsys, "eval", "compare", "tiny", "tiny", *CHAT_EVAL, code=3)["out"]
    assert failed["verdict"] == "fail"
    assert failed["sections"][0]["comparison"]["verdict"]["reasons"] == [
        "accuracy on overall is 0.0000, below the minimum 1"
    ]

    set_release_criteria(chat_project, [{"metric": "schema_compliance", "min": 1.0}])  # a text task
    unsure = run_json(capsys, "eval", "tiny", *CHAT_EVAL, "--baseline", "tiny", code=4)["out"]
    assert unsure["verdict"] == "inconclusive"
    reasons = unsure["sections"][0]["comparison"]["verdict"]["reasons"]
    assert reasons[0].startswith("no release criterion applied (skipped: schema_compliance min 1 (overall))")

    set_release_criteria(chat_project, [{"metric": "acuracy", "min": 0.5}, {"metric": "accuracy", "min": 2}])
    bad = run_json(capsys, "eval", "tiny", *CHAT_EVAL, "--baseline", "tiny", code=1)["err"]
    assert "release.criteria.0.metric: unknown metric 'acuracy' (did you mean 'accuracy'?)" in bad
    assert "release.criteria.1: min 2 is above 1, the most accuracy can be" in bad


def test_eval_errors_name_what_is_missing(chat_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "give --on DATASET" in run_json(capsys, "eval", "tiny", code=1)["err"]
    assert "no model 'nope'" in run_json(capsys, "eval", "nope", "--on", "intents", code=1)["err"]
    assert "usage: sftline eval compare" in run_json(capsys, "eval", "compare", "tiny", code=1)["err"]


def test_training_keeps_the_checkpoint_with_the_best_holdout_behaviour(
    chat_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holdout = ["--eval-on", "intents", "--eval-every", "2", "--eval-max-new-tokens", "4"]
    summary = run_json(capsys, *CHAT_TRAIN, *holdout, "--eval-metric", "exact_match")
    assert summary["eval_metric"] == "exact_match"
    with Workspace.find(chat_project) as workspace, workspace.record.session() as session:
        from sftline.record.schema import Run, RunMetric

        run = session.scalars(select(Run).where(Run.name == summary["run"])).one()
        rows = session.execute(
            select(RunMetric.name, RunMetric.step, RunMetric.value).where(RunMetric.run_id == run.id)
        ).all()
    assert {"eval_loss", "eval_exact_match", "eval_stop_rate", "eval_output_tokens"} <= {r.name for r in rows}
    # The best holdout value is the highest exact match recorded, at the first step that reached it.
    watched = sorted((r.step, r.value) for r in rows if r.name == "eval_exact_match")
    assert [step for step, _ in watched] == [2, 4, 6]
    best = max(value for _, value in watched)
    assert (summary["best_eval"], summary["best_step"]) == (best, next(s for s, v in watched if v == best))
    unknown = run_json(capsys, *CHAT_TRAIN, *holdout, "--eval-metric", "exact_mach", code=1)["err"]
    assert "eval_metric: unknown metric 'exact_mach' (did you mean 'exact_match'?)" in unknown
    # A registered metric this task lacks (a chat model has no label set) fails at the first evaluation.
    bad = run_json(capsys, *CHAT_TRAIN, *holdout, "--eval-metric", "macro_f1", code=1)
    assert "eval_metric 'macro_f1' was not measured" in bad["err"] and "exact_match" in bad["err"]


def test_generation_settings_do_not_rerun_a_classifier(
    classify_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_json(capsys, "eval", "minilm-l6", "--on", "intents")["sections"][0]
    again = run_json(capsys, "eval", "minilm-l6", "--on", "intents", "--max-new-tokens", "7")["sections"][0]
    assert again["reused"] and again["evaluation"] == first["evaluation"]
    other = run_json(capsys, "eval", "minilm-l6", "--on", "intents", "--sample", "20")["sections"][0]
    assert not other["reused"] and other["n"] == 20


def test_a_classifier_abstains_by_the_rule_its_run_chose_on_its_holdout(
    classify_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from sftline.evals.abstention import score
    from sftline.evals.predict import ClassifierPredictor

    train = ["train", "--base", "minilm-l6", "--data", "intents", "--max-steps", "12", "--lr", "1e-3"]
    summary = run_json(capsys, *train, "--false-abstention", "0.2", "--abstention-score", "energy")
    folder = Path(summary["output"])
    rule = json.loads((folder / "classifier.json").read_text())["abstention"]["rule"]
    assert (rule["score"], rule["false_abstention"], rule["label"]) == ("energy", 0.2, "oos")

    stored = run_json(capsys, "eval", summary["run"], "--on", "intents", "--no-base")["sections"][0]
    plain = run_json(
        capsys, "eval", summary["run"], "--on", "intents", "--no-base", "--no-stored-abstention"
    )["sections"][0]
    assert stored["settings"]["abstention_rule"] == rule and plain["settings"]["abstention_rule"] is None
    # The same decisions by hand: the top label, replaced by oos where the energy is above the
    # stored threshold (with the stored temperature).
    predictor = ClassifierPredictor.load(folder, stored_abstention=False)
    outputs = stored_outputs(classify_project, stored["evaluation"])
    logits, features, _, _ = predictor.outputs([o.prompt for o in outputs])
    oos = predictor.labels.index("oos")
    energy = score(
        "energy",
        logits,
        features,
        temperature=predictor.temperature,
        in_scope=[i for i in range(len(predictor.labels)) if i != oos],
        stats=None,
    )
    expected = (logits.argmax(axis=1) == oos) | (energy > rule["threshold"])
    assert [o.output == "oos" for o in outputs] == expected.tolist()
    unruled = {o.example_id: o.output for o in stored_outputs(classify_project, plain["evaluation"])}
    assert [unruled[o.example_id] == "oos" for o in outputs] == (logits.argmax(axis=1) == oos).tolist()
    # A rule that turns a fifth of in-scope inputs away abstains more than the top label alone.
    assert sum(expected) > sum(logits.argmax(axis=1) == oos)
