"""`sftline eval`: a model (and its baseline, and its base model) on each dataset of a suite.

The result is one dict that `--json` prints and the HTML report renders: per dataset, every
metric overall and per slice with 95% intervals, the base model's numbers (what SFT changed), the
comparison with a baseline and the release verdict.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sftline.config import load_settings
from sftline.errors import ConfigError
from sftline.evals.compare import combine, compare, failing_slices, verdict, worst_examples
from sftline.evals.scoring import confusion, outcomes
from sftline.evals.settings import EvalSettings
from sftline.record import queries
from sftline.record.queries import resolve
from sftline.record.workspace import Workspace
from sftline.stations.evaluate import EvalModel, EvalResult, evaluate, resolve_model
from sftline.stations.runner import ArtifactRef, Produced, StationResult, Work, canonical_json, run_station

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
    model: EvalModel,
    settings: EvalSettings,
    *,
    baseline: EvalModel | None = None,
    base: EvalModel | None = None,
    announce: Announce | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Evaluate `model` on every dataset of `settings.on` (beside `baseline` for the verdict, or
    its `base` to show what SFT changed); see the module docstring."""
    if not settings.on:
        raise ConfigError("nothing to evaluate on: give --on DATASET (or `on:` in the suite)")
    contract = workspace.project.config.contract
    release = workspace.project.config.release
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


def model_artifact(model: EvalModel) -> ArtifactRef:
    """A run's model, a base model or a model folder, as the lineage names it."""
    kind = {"run": "model", "base": "base_model", "folder": "model_folder"}[model.kind]
    return ArtifactRef(kind, model.name, model.content_hash)


def _version(version: Any) -> ArtifactRef:
    return ArtifactRef("dataset_version", version.ref, version.content_hash)


def eval_work(
    workspace: Workspace,
    settings: EvalSettings,
    model: EvalModel,
    baseline: EvalModel | None,
    base: EvalModel | None,
) -> Work:
    """The models and datasets by content hash (their roles and the datasets' order in the
    settings, not their names); the settings that shape outputs and scores; the contract and
    release criteria that decide the verdict."""
    models = {"model": model, "baseline": baseline, "base": base}
    inputs = [model_artifact(m) for m in models.values() if m is not None]
    roles: dict[str, Any] = {role: m.content_hash if m else None for role, m in models.items()}
    with workspace.record.session() as session:
        datasets = [_version(resolve(session, ref)) for ref in settings.on]
        calibration = _version(resolve(session, settings.calibrate_on)) if settings.calibrate_on else None
    inputs += [*datasets, *([calibration] if calibration else [])]
    roles["on"] = [version.hash for version in datasets]
    roles["calibrate_on"] = calibration.hash if calibration else None
    config = workspace.project.config
    unshaping = {"on", "calibrate_on", "batch_size", "batch_tokens"}
    shaping = {
        "roles": roles,
        # The suite's own fields (not the line's model/baseline names, not dataset names).
        "suite": settings.model_dump(mode="json", include=set(EvalSettings.model_fields) - unshaping),
        "contract": config.contract.model_dump(mode="json"),
        "release": config.release.model_dump(mode="json"),
    }
    return Work("eval", f"eval {model.name}", tuple(inputs), shaping)


def _evaluations(workspace: Workspace, report: dict[str, Any]) -> Produced:
    """The evaluations of a report, each the child of its own model and dataset."""
    names = [
        part["evaluation"]
        for section in report["sections"]
        for part in (section, section.get("baseline"), section.get("base"))
        if part
    ]
    kinds = {"run": "model", "base": "base_model", "folder": "model_folder"}
    parents: dict[ArtifactRef, list[ArtifactRef]] = {}
    with workspace.record.session() as session:
        for name in dict.fromkeys(names):
            row = queries.evaluation_named(session, name)
            model = ArtifactRef(kinds[row.model_kind], row.model, row.model_hash)
            parents[ArtifactRef("evaluation", row.name, row.key)] = [model, _version(row.dataset_version)]
    result = {"verdict": report.get("verdict"), "reasons": _verdict_reasons(report)}
    return Produced(list(parents), result, parents)


def _verdict_reasons(report: dict[str, Any]) -> list[str]:
    """Why the verdict is not `pass`, per dataset (empty when it passes or there is none)."""
    return [
        f"{section['dataset']}: {reason}"
        for section in report["sections"]
        for reason in section.get("comparison", {}).get("verdict", {}).get("reasons", [])
    ]


def eval_station(
    workspace: Workspace,
    settings: EvalSettings,
    model_ref: str,
    *,
    baseline_ref: str | None = None,
    with_base: bool = True,
    announce: Announce | None = None,
    force: bool = False,
) -> StationResult:
    """`sftline eval` as a station. The report is stored as an object (`result["report_object"]`),
    so a cached evaluation prints and renders exactly as it did, verdict included."""
    model = resolve_model(workspace, model_ref)
    baseline = resolve_model(workspace, baseline_ref) if baseline_ref else None
    base = None
    if with_base and model.base and (baseline is None or baseline.name != model.base):
        base = resolve_model(workspace, model.base)
    work = eval_work(workspace, settings, model, baseline, base)

    def execute() -> Produced:
        report = run_suite(
            workspace, model, settings, baseline=baseline, base=base, announce=announce, force=force
        )
        report_object = workspace.objects.put_bytes(canonical_json(report).encode())
        produced = _evaluations(workspace, report)
        produced.result.update(report_object=report_object, model=model.name)
        return produced

    return run_station(workspace, work, execute, force=force)


def load_report(workspace: Workspace, result: StationResult) -> dict[str, Any]:
    """The full report of an eval station's run (stored as an object)."""
    report: dict[str, Any] = json.loads(workspace.objects.get_bytes(result.result["report_object"]))
    return report
