"""From stored per-example outputs to every metric, overall and per slice.

Scoring reads only what the record keeps for each example (`Output`), so any evaluation can be
re-scored later, under a changed contract or with a new metric, without running the model again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sftline.contract.spec import Contract
from sftline.evals import metrics as m

DEFAULT_REFUSAL_PHRASES = (
    "i can't help",
    "i cannot help",
    "i can't assist",
    "i cannot assist",
    "i'm sorry, but",
    "i am sorry, but",
    "i'm not able to",
    "i am not able to",
    "as an ai",
)
"""Used when the contract names no refusal phrases of its own."""

OVERALL = "overall"


@dataclass
class Output:
    """What a model did with one example: everything any metric needs."""

    example_id: str
    target: str
    output: str
    """The model's answer: generated text, or the classifier's top label."""
    tags: dict[str, str] = field(default_factory=dict)
    prompt: str = ""
    ranked: list[tuple[str, float]] = field(default_factory=list)
    """Classifiers: the top labels with their probabilities, best first."""
    confidence: float | None = None
    """Probability of the answer: the top label's, or the generated sequence's (product over its
    tokens and the stop token, from float64 log-probabilities; the mean log-probability per token is
    log(confidence) / (output_tokens + finished))."""
    prompt_tokens: int = 0
    output_tokens: int = 0
    finished: bool = True
    """Generation ended with a stop token rather than at the token limit."""
    latency_ms: float = 0.0
    """This example's share of its batch's wall time."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Outcomes:
    """Per-example facts derived from outputs under a contract; arrays aligned with the outputs."""

    example_ids: list[str]
    tags: list[dict[str, str]]
    targets: list[str]
    predictions: list[str]
    columns: dict[str, np.ndarray]
    """Boolean and numeric per-example columns: correct, abstained, refused, ..."""
    ranks: np.ndarray | None
    """1-based rank of the target among a classifier's ranked labels (0 when absent)."""
    kind: str
    abstention: str | None


def normalise_answer(text: str) -> str:
    """The form in which answers and targets are compared: surrounding whitespace dropped, inner
    runs of whitespace made one space, case folded (`" OOS\\n"` is `oos`). Correctness of text and
    label answers, abstention and label compliance all compare in this form, so an answer can never
    count as abstained yet wrong. JSON answers are compared as JSON instead (case matters inside)."""
    return " ".join(text.split()).casefold()


def _json_value(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return False, None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


_DECODER = json.JSONDecoder()


def _json_values(text: str) -> tuple[list[Any], bool]:
    """The JSON objects and arrays found in `text`, left to right (an array's items flattened into
    the list), and whether they are all of the text apart from whitespace."""
    values: list[Any] = []
    whole, at = True, 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        if text[at] in "{[":
            try:
                value, end = _DECODER.raw_decode(text, at)
            except json.JSONDecodeError:
                pass
            else:
                values.extend(value if isinstance(value, list) else [value])
                at = end
                continue
        whole = False
        at += 1
    return values, whole


def _tool_call(value: Any) -> str | None:
    """A tool call as canonical JSON of [name, arguments], from the shapes chat templates write:
    OpenAI's `{"function": {"name", "arguments"}, "id", "type"}` (id and type do not matter),
    Hermes/Qwen's `{"name", "arguments"}` and Llama 3's `{"name", "parameters"}`. Arguments given
    as a JSON string are parsed, so a string and the object it encodes are the same call."""
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):
        value = value["function"]
        arguments = value.get("arguments", {})
    elif "arguments" in value or "parameters" in value:
        arguments = value.get("arguments", value.get("parameters"))
    else:
        return None
    name = value.get("name")
    if not isinstance(name, str):
        return None
    if isinstance(arguments, str):
        ok, parsed = _json_value(arguments)
        arguments = parsed if ok else arguments
    return _canonical([name, arguments])


def _target_tool_calls(target: str) -> list[str] | None:
    """The calls of a tool-call turn's target, sorted; None when the target is not one.

    Such a target is JSON and nothing else: the list of OpenAI-shaped calls evaluation renders
    (`render_prompt`), or the calls one after another (`Example.target`). Calls are compared as a
    multiset: parallel calls are independent and answered by id, so their order does not matter.
    """
    if target.lstrip()[:1] not in ("{", "["):
        return None
    values, whole = _json_values(target)
    if not whole or not values or not all(isinstance(v, dict) and "function" in v for v in values):
        return None
    calls = [_tool_call(v) for v in values]
    return None if None in calls else sorted(c for c in calls if c is not None)


def _output_tool_calls(output: str) -> list[str]:
    """The calls a generated answer makes, sorted; text around them (the `<tool_call>` tags some
    templates write) is ignored, and so is JSON that is no call."""
    values, _ = _json_values(output)
    return sorted(c for c in map(_tool_call, values) if c is not None)


def _refused(text: str, phrases: Sequence[str]) -> bool:
    lower = text.lower()
    return any(phrase in lower for phrase in phrases)


def outcomes(outputs: Sequence[Output], contract: Contract, labels: Sequence[str] | None = None) -> Outcomes:
    """Decide, per example, what each behaviour metric counts."""
    kind = contract.output.kind
    abstention = contract.abstention
    phrases = [p.lower() for p in contract.refusal_phrases] or list(DEFAULT_REFUSAL_PHRASES)
    label_set = set(labels or contract.output.labels or {o.target for o in outputs})
    if abstention:
        label_set.add(abstention)
    validator = None
    if kind == "json_schema":
        from jsonschema import Draft202012Validator

        validator = Draft202012Validator(contract.output.json_schema or {})
    # Predictions and targets are reported in one spelling per normalised form, the label's own
    # where there is one (`OOS` as `oos`), so the label metrics count what `correct` counts.
    spelling = {normalise_answer(label): label for label in sorted(label_set)}
    answers = [normalise_answer(o.output) for o in outputs]
    target_keys = [normalise_answer(o.target) for o in outputs]
    correct, valid_json, schema_ok = [], [], []
    for o, answer, target in zip(outputs, answers, target_keys, strict=True):
        calls = None if kind == "labels" else _target_tool_calls(o.target)
        if kind == "json_schema":
            ok, value = _json_value(o.output)
            target_ok, target_value = _json_value(o.target)
            valid_json.append(ok)
            schema_ok.append(ok and validator is not None and validator.is_valid(value))
        if calls is not None:
            correct.append(_output_tool_calls(o.output) == calls)
        elif kind == "json_schema":
            # Compared as canonical JSON: key order and spacing do not matter, but true is not 1.
            correct.append(ok and target_ok and _canonical(value) == _canonical(target_value))
        else:
            correct.append(answer == target)
    predictions = [spelling.get(answer, answer) for answer in answers]
    columns: dict[str, np.ndarray] = {
        "correct": np.array(correct, dtype=bool),
        "refused": np.array([_refused(o.output, phrases) for o in outputs], dtype=bool),
        "finished": np.array([o.finished for o in outputs], dtype=bool),
        "output_tokens": np.array([o.output_tokens for o in outputs], dtype=np.float64),
        "prompt_tokens": np.array([o.prompt_tokens for o in outputs], dtype=np.float64),
        "latency_ms": np.array([o.latency_ms for o in outputs], dtype=np.float64),
    }
    if kind == "labels":
        columns["in_labels"] = np.array([answer in spelling for answer in answers], dtype=bool)
    if kind == "json_schema":
        columns["valid_json"] = np.array(valid_json, dtype=bool)
        columns["schema_ok"] = np.array(schema_ok, dtype=bool)
    if abstention:
        key = normalise_answer(abstention)
        columns["abstained"] = np.array([answer == key for answer in answers], dtype=bool)
        columns["should_abstain"] = np.array([target == key for target in target_keys], dtype=bool)
    if all(o.confidence is not None for o in outputs) and outputs:
        columns["confidence"] = np.array([o.confidence for o in outputs], dtype=np.float64)
    ranks = None
    if outputs and all(o.ranked for o in outputs):
        ranks = np.array(
            [
                next((i + 1 for i, (label, _) in enumerate(o.ranked) if normalise_answer(label) == target), 0)
                for o, target in zip(outputs, target_keys, strict=True)
            ]
        )
    return Outcomes(
        [o.example_id for o in outputs],
        [dict(o.tags) for o in outputs],
        [spelling.get(target, target) for target in target_keys],
        predictions,
        columns,
        ranks,
        kind,
        abstention,
    )


def metric_functions(
    outcome: Outcomes, contract: Contract, *, top_k: Iterable[int] = (3, 5)
) -> dict[str, m.Metric]:
    """Every metric that applies to these outcomes, by its plain name."""
    c = outcome.columns
    fns: dict[str, m.Metric] = {
        "accuracy": m.mean_of(c["correct"]),
        "exact_match": m.mean_of(c["correct"]),
    }
    if outcome.kind == "labels":
        fns["macro_f1"] = m.macro_f1(outcome.targets, outcome.predictions)
        fns["label_compliance"] = m.mean_of(c["in_labels"])
    if outcome.ranks is not None:
        for k in top_k:
            if k > 1:
                fns[f"top_{k}_accuracy"] = m.mean_of((outcome.ranks >= 1) & (outcome.ranks <= k))
    if outcome.abstention:
        abstained, should = c["abstained"], c["should_abstain"]
        fns["in_scope_accuracy"] = m.mean_of(c["correct"], where=~should)
        precision, recall = m.precision_recall(should, abstained)
        fns["abstention_precision"] = precision
        fns["abstention_recall"] = recall
        fns["abstention_rate"] = m.mean_of(abstained)
    fns["refusal_rate"] = m.mean_of(c["refused"])
    if outcome.kind == "json_schema":
        fns["json_validity"] = m.mean_of(c["valid_json"])
        fns["schema_compliance"] = m.mean_of(c["schema_ok"])
    if "confidence" in c:
        fns["ece"] = m.calibration_error(c["confidence"], c["correct"])
        fns["mean_confidence"] = m.mean_of(c["confidence"])
    limit = contract.limits.max_target_tokens
    fns["stop_rate"] = m.mean_of(c["finished"])
    fns["output_tokens"] = m.mean_of(c["output_tokens"])
    fns["verbosity"] = m.mean_of(c["output_tokens"] / limit)
    fns["over_limit_rate"] = m.mean_of(c["output_tokens"] > limit)
    fns["prompt_tokens"] = m.mean_of(c["prompt_tokens"])
    fns["latency_ms"] = m.mean_of(c["latency_ms"])
    return fns


def point_metrics(
    outputs: Sequence[Output], contract: Contract, labels: Sequence[str] | None = None
) -> dict[str, float | None]:
    """Every metric's value over all outputs, without intervals (what training watches)."""
    outcome = outcomes(outputs, contract, labels)
    ones = np.ones((1, len(outputs)))
    values = {name: fn(ones)[0] for name, fn in metric_functions(outcome, contract).items()}
    return {name: None if np.isnan(v) else float(v) for name, v in values.items()}


def slices(outcome: Outcomes, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """`overall` and one slice per tag value (`domain=banking`), as example indices."""
    result = {OVERALL: np.arange(len(outcome.example_ids))}
    found: dict[str, list[int]] = {}
    for i, tags in enumerate(outcome.tags):
        for key, value in tags.items():
            if keys is None or key in keys:
                found.setdefault(f"{key}={value}", []).append(i)
    for name in sorted(found):
        result[name] = np.array(found[name])
    return result


def subset(outcome: Outcomes, index: np.ndarray) -> Outcomes:
    take = index.tolist()
    return Outcomes(
        [outcome.example_ids[i] for i in take],
        [outcome.tags[i] for i in take],
        [outcome.targets[i] for i in take],
        [outcome.predictions[i] for i in take],
        {k: v[index] for k, v in outcome.columns.items()},
        None if outcome.ranks is None else outcome.ranks[index],
        outcome.kind,
        outcome.abstention,
    )


def score(
    outputs: Sequence[Output],
    contract: Contract,
    *,
    labels: Sequence[str] | None = None,
    slice_keys: Sequence[str] | None = None,
    replicates: int = m.N_BOOTSTRAP,
    seed: int = 0,
) -> dict[str, Any]:
    """{"overall": {metric: estimate}, "slices": {slice: {metric: estimate}}, "n": ...,
    "reliability": bins}; every estimate has value, low, high (95% bootstrap) and n."""
    outcome = outcomes(outputs, contract, labels)
    by_slice: dict[str, dict[str, dict[str, Any]]] = {}
    for name, index in slices(outcome, slice_keys).items():
        part = subset(outcome, index)
        weights = m.bootstrap_weights(len(index), replicates=replicates, seed=seed)
        by_slice[name] = {
            metric: m.estimate(fn, weights).as_dict()
            for metric, fn in metric_functions(part, contract).items()
        }
    result: dict[str, Any] = {
        "n": len(outputs),
        "overall": by_slice.pop(OVERALL),
        "slices": by_slice,
    }
    if "confidence" in outcome.columns:
        result["reliability"] = m.reliability(outcome.columns["confidence"], outcome.columns["correct"])
    return result


def confusion(outcome: Outcomes, limit: int = 25) -> dict[str, Any]:
    """The most confused labels: a matrix over the `limit` labels with the most errors, and the
    top (target, prediction) pairs."""
    pairs: dict[tuple[str, str], int] = {}
    errors: dict[str, int] = {}
    for target, prediction, ok in zip(
        outcome.targets, outcome.predictions, outcome.columns["correct"], strict=True
    ):
        if not ok:
            pairs[(target, prediction)] = pairs.get((target, prediction), 0) + 1
            errors[target] = errors.get(target, 0) + 1
            errors[prediction] = errors.get(prediction, 0) + 1
    labels = [label for label, _ in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for target, prediction in zip(outcome.targets, outcome.predictions, strict=True):
        if target in index and prediction in index:
            matrix[index[target]][index[prediction]] += 1
    top = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return {
        "labels": labels,
        "matrix": matrix,
        "pairs": [{"target": t, "prediction": p, "count": n} for (t, p), n in top],
    }
