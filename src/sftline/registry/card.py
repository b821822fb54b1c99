"""A registered version's model card: the README.md its exported Hugging Face folder carries.

The front matter is the Hub's metadata (base model, datasets, licence, tags, pipeline, library and a
`model-index` with one result per evaluated dataset and slice), so the Hub and
`huggingface_hub.ModelCard` read it. The body is what someone deciding whether to use the model
needs: the contract it was trained to, the data and what the gates did to it, how it was trained,
what it measured against its base model, where it is weakest, and the hashes that reproduce it.
Everything comes from the record and the stored evaluations; nothing is measured here, so the
card of a version is the same text whenever it is rendered from the same inputs.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import yaml

from sftline.contract.metrics import BOUNDED_KINDS, is_known, metric
from sftline.models.catalog import EMBEDDED
from sftline.registry.stages import check_target_stage

HUB_IDS: dict[str, str] = {
    "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
}
"""The Hub repository each embedded base model was published as: the name a card and an adapter
give their base, since the cache path it was trained from means nothing on another machine."""

PIPELINE_TAGS = {"classify": "text-classification", "chat": "text-generation"}
DASH = "–"
"""Shown for a value that is undefined (None)."""
WORST_SLICES = 5
FAILURE_EXAMPLES = 5
TEXT_LIMIT = 300  # characters of a prompt, target or output shown in a table cell
PREFERRED_MAIN = ("accuracy", "exact_match")
"""The main metric when the run did not pick a behaviour metric of its own (it picked `loss`)."""

Mode = Literal["merged", "adapter"]


def is_embedded(base_model: Mapping[str, Any]) -> bool:
    """The base came from sftline's catalog: an embedded name whose source is a package, not a
    folder the user added under that name (`local:PATH`)."""
    source = str(base_model.get("source") or "")
    return base_model.get("name") in EMBEDDED and not source.startswith("local:")


def portable_base_name(base_model: Mapping[str, Any]) -> str:
    """The base model's name as another machine knows it: its Hub id when it is an embedded one
    the catalog knows, else the name it was registered under."""
    name = str(base_model["name"])
    return HUB_IDS.get(name, name) if is_embedded(base_model) else name


def render_card(
    record: Mapping[str, Any],
    evaluations: Sequence[Mapping[str, Any]],
    base_evaluations: Iterable[Mapping[str, Any]] = (),
    *,
    stage: str,
    mode: Mode = "merged",
) -> str:
    """README.md of `NAME@N` in `stage`: front matter, then one section per question a user asks.

    `base_evaluations` are the base model's evaluations on the same datasets, shown beside the
    version's own (what SFT changed); `mode` is the export the card travels with (an adapter's
    card names peft as its library and says how to load it onto the base).
    """
    check_target_stage(stage)
    by_dataset = {str(e["dataset"]): e for e in base_evaluations}
    sections = [
        _title(record, stage),
        _intended_use(record, mode),
        _training_data(record),
        _training_procedure(record),
        _evaluation(record, evaluations, by_dataset),
        _limitations(record, evaluations),
        _reproduce(record),
    ]
    return f"---\n{_yaml(front_matter(record, evaluations, mode=mode))}---\n\n" + "\n\n".join(sections) + "\n"


def front_matter(
    record: Mapping[str, Any], evaluations: Sequence[Mapping[str, Any]], *, mode: Mode = "merged"
) -> dict[str, Any]:
    """The Hub metadata of the card, as a dict (safe_dump writes it)."""
    run = record["run"]
    data = record["data"]
    datasets = [part["ref"] for part in (data.get("train"), data.get("holdout")) if part]
    return {
        "base_model": portable_base_name(record["base_model"]),
        "datasets": datasets,
        "license": record.get("license") or "other",
        "tags": ["sftline", run["task"], run["method"], *(["lora-adapter"] if mode == "adapter" else [])],
        "pipeline_tag": PIPELINE_TAGS[run["task"]],
        "library_name": "peft" if mode == "adapter" else "transformers",
        "model-index": [
            {
                "name": _version_name(record),
                "results": [r for e in evaluations for r in _results(e, PIPELINE_TAGS[run["task"]])],
            }
        ],
    }


def _results(evaluation: Mapping[str, Any], task_type: str) -> list[dict[str, Any]]:
    """One model-index result per slice (overall first) of one evaluation: its quality metrics,
    rates and scores between 0 and 1 (latency and lengths depend on the machine and the limit)."""
    metrics = evaluation["metrics"]
    ref = str(evaluation["dataset"])
    name, _, revision = ref.partition("@")
    results = []
    for slice_name, values in _slices(metrics):
        dataset: dict[str, Any] = {"name": ref if slice_name == "overall" else f"{ref} [{slice_name}]"}
        dataset["type"] = name
        if revision:
            dataset["revision"] = revision
        if slice_name != "overall":
            dataset["args"] = {"slice": slice_name}
        reported = [
            {"type": key, "value": round(float(estimate["value"]), 6), "name": key}
            for key, estimate in sorted(values.items())
            if estimate.get("value") is not None and _is_quality(key)
        ]
        if reported:
            results.append({"task": {"type": task_type}, "dataset": dataset, "metrics": reported})
    return results


def _is_quality(name: str) -> bool:
    return is_known(name) and metric(name).kind in BOUNDED_KINDS


def _slices(metrics: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """("overall", its metrics), then every slice in name order."""
    return [("overall", metrics.get("overall", {})), *sorted(metrics.get("slices", {}).items())]


# --- sections -------------------------------------------------------------------------------------


def _title(record: Mapping[str, Any], stage: str) -> str:
    base = record["base_model"]
    run = record["run"]
    portable = portable_base_name(base)
    named = f"`{portable}`" if portable == base["name"] else f"`{portable}` (sftline's `{base['name']}`)"
    return (
        f"# {_version_name(record)}\n\n"
        f"A {_task_words(run['task'])} fine-tuned from {named} with {run['method']} fine-tuning by "
        f"sftline {record['code']['version']}, in run `{run['name']}`. "
        f"Registry stage: **{stage}**."
    )


def _intended_use(record: Mapping[str, Any], mode: Mode) -> str:
    contract = record["contract"]
    output = contract.get("output") or {}
    lines = ["## Intended use", "", f"- Task: **{contract['task']}**", f"- Output: {output.get('kind')}"]
    labels = output.get("labels") or record.get("labels")
    if labels:
        lines.append(f"- Labels ({len(labels)}): " + ", ".join(_code(label) for label in labels))
    if contract.get("abstention"):
        lines.append(
            f"- Abstention: the model answers {_code(contract['abstention'])} for inputs outside "
            "the labels it knows"
        )
    for key, value in sorted((contract.get("limits") or {}).items()):
        lines.append(f"- Limit `{key}`: {value}")
    if contract.get("system_prompt"):
        lines += ["", "Prompts were rendered with this system prompt; use it as well:", ""]
        lines.append(_fence(str(contract["system_prompt"]), "text"))
    if output.get("json_schema"):
        lines += ["", "Answers follow this JSON schema:", ""]
        lines.append(_fence(json.dumps(output["json_schema"], indent=2, sort_keys=True), "json"))
    lines += [
        "",
        "Its behaviour is known only on the data and evaluations below; other inputs, and uses "
        "outside this contract, are unmeasured.",
        "",
        _how_to_load(record, mode),
    ]
    return "\n".join(lines)


def _how_to_load(record: Mapping[str, Any], mode: Mode) -> str:
    if record["run"]["task"] == "classify":
        code = (
            "from pathlib import Path\n"
            "from sftline.models.classifier import SentenceClassifier\n\n"
            'model = SentenceClassifier.from_pretrained(Path("path/to/this/folder"))'
        )
        return (
            "### How to load\n\nThe folder is the encoder's Hugging Face folder plus sftline's head "
            "(`classifier.json`, `classifier_head.safetensors`): transformers' `AutoModel` loads the "
            "encoder alone; the classifier, with its labels, temperature and abstention rule, loads "
            "with sftline:\n\n" + _fence(code, "python")
        )
    if mode == "adapter":
        code = (
            "from peft import AutoPeftModelForCausalLM\n"
            "from transformers import AutoTokenizer\n\n"
            'model = AutoPeftModelForCausalLM.from_pretrained("path/to/this/folder")\n'
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")'
        )
        return (
            "### How to load\n\nA LoRA adapter for "
            f"`{portable_base_name(record['base_model'])}` (peft loads the base first):\n\n"
            + _fence(code, "python")
        )
    code = (
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")\n'
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")'
    )
    return (
        "### How to load\n\nThe folder holds the full weights (safetensors), the tokenizer, the chat "
        "template and the generation config; format prompts with `tokenizer.apply_chat_template`. "
        "vLLM serves it as is: `vllm serve path/to/this/folder`.\n\n" + _fence(code, "python")
    )


def _training_data(record: Mapping[str, Any]) -> str:
    data = record["data"]
    rows = [
        [role, f"`{part['ref']}`", str(part.get("n_examples", DASH)), f"`{part['content_hash']}`"]
        for role, part in (("train", data.get("train")), ("holdout", data.get("holdout")))
        if part
    ]
    parts = ["## Training data", "", _table(["role", "version", "examples", "content hash"], rows)]
    upstream = record.get("upstream") or {}
    if upstream.get("versions"):
        rows = [
            [f"`{v['ref']}`", str(v.get("n_examples", DASH)), f"`{v['content_hash']}`"]
            for v in upstream["versions"]
        ]
        parts += [
            "",
            "Versions it was built from:",
            "",
            _table(["version", "examples", "content hash"], rows),
        ]
    parts += [_gate_report(report) for report in upstream.get("gate_reports", [])]
    parts += [_split(split) for split in upstream.get("splits", [])]
    parts += [_mixture(mixture) for mixture in upstream.get("mixtures", [])]
    return "\n".join(parts)


def _gate_report(report: Mapping[str, Any]) -> str:
    """The gates' verdict on one version and the count of each reason, per gate."""
    against = report.get("against") or []
    head = (
        f"\n### Gates: report {report['id']} on `{report['checked']}` ({report.get('status', DASH)})\n\n"
        f"{report.get('n_checked', DASH)} examples checked, {report.get('n_accepted', DASH)} accepted "
        f"(into `{report.get('accepted') or DASH}`), {report.get('n_quarantined', DASH)} quarantined."
    )
    if against:
        head += " Checked against " + ", ".join(f"`{ref}`" for ref in against) + "."
    rows = [
        [gate, _cell(reason), *(str(counts.get(k, 0)) for k in ("blocked", "warned", "redacted"))]
        for gate, reasons in sorted((report.get("counts") or {}).items())
        for reason, counts in sorted(reasons.items())
    ]
    if not rows:
        return head + " No gate flagged anything."
    return head + "\n\n" + _table(["gate", "reason", "blocked", "warned", "redacted"], rows)


def _split(split: Mapping[str, Any]) -> str:
    return (
        f"\n- Split {split['id']} of `{split['source']}` (seed {split.get('seed')}): "
        f"plan {_inline(split.get('plan'))}, parts {_inline(split.get('parts'))}"
    )


def _mixture(mixture: Mapping[str, Any]) -> str:
    return (
        f"\n- Mixture {mixture['id']} into `{mixture['result']}` (seed {mixture.get('seed')}, "
        f"{mixture.get('total')} examples): sources {_inline(mixture.get('sources'))}, "
        f"components {_inline(mixture.get('components'))}"
    )


def _training_procedure(record: Mapping[str, Any]) -> str:
    run = record["run"]
    code = record["code"]
    environment = record.get("environment") or {}
    facts = [
        f"- Method: {run['method']}; device: {run.get('device', DASH)}",
        f"- Steps: {run.get('steps', DASH)}; trained tokens: {run.get('trained_tokens', DASH)}",
        f"- Time: {_duration(run.get('seconds'))} ({run.get('started_at')} to {run.get('finished_at')})",
        f"- Seed: {record.get('seed')}",
        f"- Best checkpoint: step {_number(run.get('best_step'))} by `{run.get('eval_metric')}` "
        f"= {_number(run.get('best_eval'))}",
        f"- Code: sftline {code['version']}, commit `{code.get('commit') or 'unknown'}`"
        + (" with uncommitted changes" if code.get("dirty") else ""),
        f"- Python {environment.get('python', DASH)} on {environment.get('platform', DASH)} "
        f"(recorded {environment.get('recorded', DASH)})",
    ]
    config_rows = [[f"`{key}`", _cell(_inline(value))] for key, value in _flatten(record.get("config") or {})]
    library_rows = [
        [name, version or "not installed"]
        for name, version in sorted((environment.get("libraries") or {}).items())
    ]
    return "\n".join(
        [
            "## Training procedure",
            "",
            *facts,
            "",
            "### Hyperparameters",
            "",
            _table(["setting", "value"], config_rows),
            "",
            "### Libraries",
            "",
            _table(["library", "version"], library_rows),
        ]
    )


def _evaluation(
    record: Mapping[str, Any],
    evaluations: Sequence[Mapping[str, Any]],
    base_by_dataset: Mapping[str, Mapping[str, Any]],
) -> str:
    if not evaluations:
        return "## Evaluation\n\nThis version has not been evaluated yet."
    parts = ["## Evaluation", "", "Intervals are 95% bootstrap intervals over the examples."]
    for evaluation in evaluations:
        base = base_by_dataset.get(str(evaluation["dataset"]))
        parts += ["", _evaluation_section(record, evaluation, base)]
    return "\n".join(parts)


def _evaluation_section(
    record: Mapping[str, Any], evaluation: Mapping[str, Any], base: Mapping[str, Any] | None
) -> str:
    """Every metric overall, then the main metric per slice, each beside the base model's when it
    was evaluated on the same dataset."""
    metrics = evaluation["metrics"]
    base_metrics = base["metrics"] if base else None
    overall = metrics.get("overall", {})
    main = main_metric(record, overall)
    compared = ["base model", "change"] if base else []
    overall_rows = [
        _estimate_row([name], overall[name], _slice_of(base_metrics, "overall").get(name), bool(base))
        for name in sorted(overall)
    ]
    slice_rows = [
        _estimate_row(
            [_cell(name), str(values[main].get("n", DASH))],
            values[main],
            _slice_of(base_metrics, name).get(main),
            bool(base),
        )
        for name, values in _slices(metrics)
        if main in values
    ]
    n = evaluation.get("n_examples", metrics.get("n"))
    about = f"Evaluation {evaluation['name']} on {n} examples ({evaluation.get('created_at')})"
    lines = [
        f"### `{evaluation['dataset']}`",
        "",
        about + (f"; the base model's: {base['name']}." if base else "."),
        "",
        _table(["metric", "value [95% CI]", *compared], overall_rows),
        "",
        f"`{main}` per slice:",
        "",
        _table(["slice", "n", "value [95% CI]", *compared], slice_rows),
    ]
    if base:
        lines += ["", "A change is a difference of point estimates; `sftline eval compare` tests it paired."]
    if "ece" in overall:
        lines += ["", _calibration(overall["ece"], metrics.get("reliability") or [])]
    return "\n".join(lines)


def _estimate_row(
    first: list[str], value: Mapping[str, Any], base: Mapping[str, Any] | None, with_base: bool
) -> list[str]:
    return [*first, _estimate(value), *(_beside(value, base) if with_base else [])]


def _calibration(ece: Mapping[str, Any], bins: Sequence[Mapping[str, Any]]) -> str:
    text = f"Calibration: expected calibration error {_estimate(ece)}."
    rows = [
        [f"{b['low']:.2f}–{b['high']:.2f}", str(b["count"]), _number(b["confidence"]), _number(b["accuracy"])]
        for b in bins
        if b.get("count")
    ]
    if not rows:
        return text
    return text + "\n\n" + _table(["confidence", "n", "mean confidence", "accuracy"], rows)


def _limitations(record: Mapping[str, Any], evaluations: Sequence[Mapping[str, Any]]) -> str:
    """Where the model is known to be weak, and what is not known at all."""
    parts = ["## Limitations"]
    base = record["base_model"]
    if is_embedded(base) and EMBEDDED[base["name"]].layout == "gguf":
        parts.append(
            "The base model's weights were dequantised from the GGUF file sftline embeds, so they "
            f"differ from the Hub's `{portable_base_name(base)}`: the merged export (full weights) "
            "is the model that was measured; an adapter applied to the Hub's weights is not."
        )
    if not evaluations:
        parts.append("Unmeasured: no evaluation has been recorded for this version.")
    parts += [_weak_spots(record, evaluation) for evaluation in evaluations]
    return "\n\n".join(parts)


def _weak_spots(record: Mapping[str, Any], evaluation: Mapping[str, Any]) -> str:
    """The slices where the main metric is worst, and the worst examples when stored."""
    metrics = evaluation["metrics"]
    main = main_metric(record, metrics.get("overall", {}))
    measured = [
        (name, values[main])
        for name, values in (metrics.get("slices") or {}).items()
        if main in values and values[main].get("value") is not None
    ]
    better_high = metric(main).higher_is_better if is_known(main) else True
    measured.sort(key=lambda item: (item[1]["value"] if better_high else -item[1]["value"], item[0]))
    lines = [f"### `{evaluation['dataset']}`", ""]
    if measured:
        rows = [[_cell(name), str(e.get("n", DASH)), _estimate(e)] for name, e in measured[:WORST_SLICES]]
        lines += [f"Weakest slices by `{main}`:", "", _table(["slice", "n", main], rows)]
    else:
        lines.append("No slices were measured.")
    examples = list(evaluation.get("worst") or [])[:FAILURE_EXAMPLES]
    if examples:
        rows = [[_cell(_short(e.get(k))) for k in ("prompt", "target", "output")] for e in examples]
        lines += ["", "Its worst examples:", "", _table(["prompt", "target", "output"], rows)]
    return "\n".join(lines)


def _reproduce(record: Mapping[str, Any]) -> str:
    data = record["data"]
    hashes = [
        ["model", f"`{record['artifact']['content_hash']}`"],
        ["base model", f"`{record['base_model']['content_hash']}`"],
        *[
            [f"{role} data", f"`{part['content_hash']}`"]
            for role, part in (("train", data.get("train")), ("holdout", data.get("holdout")))
            if part
        ],
    ]
    if record["run"].get("station_key"):
        hashes.append(["training station key", f"`{record['run']['station_key']}`"])
    files = [
        [_code(name, in_table=True), f"`{sha}`"] for name, sha in sorted(record["artifact"]["files"].items())
    ]
    return "\n".join(
        [
            "## How to reproduce",
            "",
            "In the sftline project that registered it:",
            "",
            _fence(f"sftline models reproduce {_version_name(record)}", "bash"),
            "",
            "What went in and what came out, by sha256:",
            "",
            _table(["what", "content hash"], hashes),
            "",
            _table(["file", "sha256"], files),
        ]
    )


# --- values and markdown --------------------------------------------------------------------------


def main_metric(record: Mapping[str, Any], overall: Mapping[str, Any]) -> str:
    """The metric the limitations and slice tables rank by: the one the run chose its checkpoint
    by, when an evaluation measures it; else accuracy or exact match; else the first measured."""
    chosen = record["run"].get("eval_metric")
    for name in (chosen, *PREFERRED_MAIN):
        if name in overall:
            return str(name)
    return min(overall, default="accuracy")


def _version_name(record: Mapping[str, Any]) -> str:
    return f"{record['name']}@{record['version']}"


def _task_words(task: str) -> str:
    return "text classifier" if task == "classify" else "chat model"


def _slice_of(metrics: Mapping[str, Any] | None, name: str) -> Mapping[str, Any]:
    if metrics is None:
        return {}
    return metrics.get("overall", {}) if name == "overall" else metrics.get("slices", {}).get(name, {})


def _beside(value: Mapping[str, Any], base: Mapping[str, Any] | None) -> list[str]:
    """The base model's estimate and the change from it to this version's."""
    if not base:
        return [DASH, DASH]
    if value.get("value") is None or base.get("value") is None:
        return [_estimate(base), DASH]
    return [_estimate(base), f"{value['value'] - base['value']:+.4g}"]


def _estimate(estimate: Mapping[str, Any]) -> str:
    value = _number(estimate.get("value"))
    if estimate.get("low") is None or estimate.get("high") is None:
        return value
    return f"{value} [{_number(estimate['low'])}, {_number(estimate['high'])}]"


def _number(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    minutes, rest = divmod(float(seconds), 60)
    return f"{int(minutes)} min {rest:.0f} s" if minutes else f"{rest:.1f} s"


def _flatten(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """("lora.rank", 16) for nested settings, in key order."""
    items: list[tuple[str, Any]] = []
    for key, value in sorted(config.items()):
        if isinstance(value, Mapping) and value:
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _inline(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _short(value: Any) -> str:
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def _cell(text: Any) -> str:
    """`text` safe inside a Markdown table cell: HTML escaped, pipes escaped, lines as <br>."""
    escaped = html.escape(str(text), quote=False).replace("|", "\\|")
    return escaped.replace("\r\n", "\n").replace("\n", "<br>")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; cells are already escaped by the caller (`_cell`)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _fence(text: str, language: str) -> str:
    """A fenced code block whose fence is longer than any run of backticks in `text`."""
    fence = "`" * max(3, _longest_backticks(text) + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def _code(text: Any, *, in_table: bool = False) -> str:
    """`text` as an inline code span that survives backticks in it (and, in a table, pipes)."""
    text = str(text)
    ticks = "`" * (_longest_backticks(text) + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") else text
    span = f"{ticks}{padded}{ticks}"
    return span.replace("|", "\\|") if in_table else span


def _longest_backticks(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


def _yaml(data: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, default_flow_style=False)
