"""`sftline eval`: a model (and its baseline, and its base model) on each dataset of a suite.

The result is one dict that `--json` prints and the HTML report renders: per dataset, every
metric overall and per slice with 95% intervals, the base model's numbers (what SFT changed), the
comparison with a baseline and the release verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sftline.config import load_settings
from sftline.errors import ConfigError
from sftline.evals.compare import combine, compare, failing_slices, verdict, worst_examples
from sftline.evals.runner import EvalModel, EvalResult, EvalSettings, evaluate, resolve_model
from sftline.evals.scoring import confusion, outcomes
from sftline.record.workspace import Workspace

Announce = Callable[[str], Callable[[int, int], None] | None]
"""Called before each model runs with a description; returns a progress callback (or None)."""


def load_suite(path: Path | None, overrides: dict[str, Any]) -> EvalSettings:
    return load_settings(EvalSettings, path, overrides, "the eval suite")


def _run(
    workspace: Workspace,
    model: EvalModel,
    dataset: str,
    settings: EvalSettings,
    announce: Announce | None,
    force: bool,
) -> EvalResult:
    progress = announce(f"{model.name} on {dataset}") if announce else None
    return evaluate(workspace, model, dataset, settings, progress=progress, force=force)


def _summary(result: EvalResult) -> dict[str, Any]:
    return {"model": result.model.name, "evaluation": result.evaluation, "metrics": result.metrics}


def run_suite(
    workspace: Workspace,
    model_ref: str,
    settings: EvalSettings,
    *,
    baseline_ref: str | None = None,
    with_base: bool = True,
    announce: Announce | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Evaluate `model_ref` on every dataset of `settings.on`; see the module docstring."""
    if not settings.on:
        raise ConfigError("nothing to evaluate on: give --on DATASET (or `on:` in the suite)")
    contract = workspace.project.config.contract
    release = workspace.project.config.release
    model = resolve_model(workspace, model_ref)
    baseline = resolve_model(workspace, baseline_ref) if baseline_ref else None
    base = None
    if with_base and model.base and (baseline is None or baseline.name != model.base):
        base = resolve_model(workspace, model.base)
    sections = []
    for dataset in settings.on:
        result = _run(workspace, model, dataset, settings, announce, force)
        metrics = result.metrics
        section: dict[str, Any] = {
            "evaluation": result.evaluation,
            "model": model.name,
            "model_kind": model.kind,
            "model_hash": model.content_hash,
            "method": model.method,
            "dataset": result.dataset,
            "data_hash": result.data_hash,
            "task": model.task,
            "n": len(result.outputs),
            "created_at": result.created_at,
            "seconds": round(result.seconds, 2),
            "reused": result.reused,
            "settings": {k: v for k, v in result.settings.items() if k != "labels"},
            "metrics": metrics,
        }
        if contract.output.kind == "labels":
            section["confusion"] = confusion(outcomes(result.outputs, contract, result.labels))
        checks = None
        reference = baseline or base
        if reference is not None:
            other = _run(workspace, reference, dataset, settings, announce, force)
            section["baseline" if baseline is not None else "base"] = _summary(other)
            comparison = compare(
                other.outputs,
                result.outputs,
                contract,
                baseline_labels=other.labels,
                candidate_labels=result.labels,
                slice_keys=settings.slices,
                replicates=settings.replicates,
                seed=settings.seed,
            )
            comparison["baseline"], comparison["candidate"] = reference.name, model.name
            if baseline is not None:
                comparison["verdict"] = verdict(comparison, metrics, release)
                checks = comparison["verdict"]["checks"]
                section["comparison"] = comparison
            else:
                section["sft_change"] = comparison
        if base is not None and baseline is not None:
            base_result = _run(workspace, base, dataset, settings, announce, force)
            section["base"] = _summary(base_result)
        section["worst"] = worst_examples(result.outputs, contract, failing_slices(metrics, checks))
        sections.append(section)
    report: dict[str, Any] = {
        "title": f"sftline eval: {model.name}",
        "model": model.name,
        "sections": sections,
    }
    if baseline is not None:
        report["baseline"] = baseline.name
        report["verdict"] = combine(s["comparison"]["verdict"]["verdict"] for s in sections)
    return report


def run_compare(
    workspace: Workspace,
    baseline_ref: str,
    candidate_ref: str,
    settings: EvalSettings,
    *,
    announce: Announce | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """`sftline eval compare A B`: B (the candidate) against A (the baseline), with the verdict."""
    report = run_suite(
        workspace,
        candidate_ref,
        settings,
        baseline_ref=baseline_ref,
        with_base=False,
        announce=announce,
        force=force,
    )
    report["title"] = f"sftline eval compare: {candidate_ref} against {baseline_ref}"
    return report
