"""`sftline data check`: run the gates on a version, store the report, version what passed."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sftline.config import GatesConfig
from sftline.data.example import canonical_json
from sftline.data.export import example_record
from sftline.data.holdouts import frozen_gold_sets
from sftline.data.versions import commit_version, load_examples, resolve, version_summary
from sftline.gates.engine import Engine
from sftline.gates.lengths import HfTokenCounter, TokenCounter, WhitespaceCounter
from sftline.gates.runner import CheckResult, Rejected, build_gates, run_gates
from sftline.models.lookup import find_base_model
from sftline.record.schema import GateReport
from sftline.record.workspace import Workspace


def token_counter_for(workspace: Workspace) -> TokenCounter:
    """The base model's tokenizer, or whitespace words when sftline.yaml names no base model."""
    config = workspace.project.config
    if config.base_model is None:
        return WhitespaceCounter()
    base = find_base_model(workspace, config.base_model)
    return HfTokenCounter.from_folder(base.path, base.name, config.contract.system_prompt)


def _rejects_table(rejected: Sequence[Rejected]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "example_id": r.example.id,
                "gate": r.gate,
                "reason": r.reason,
                "detail": r.detail,
                "related": list(r.related),
                "location": r.example.provenance.location,
                "example": canonical_json(example_record(r.example)),
            }
            for r in rejected
        ],
        schema=pa.schema(
            [
                ("example_id", pa.string()),
                ("gate", pa.string()),
                ("reason", pa.string()),
                ("detail", pa.string()),
                ("related", pa.list_(pa.string())),
                ("location", pa.string()),
                ("example", pa.string()),
            ]
        ),
    )


@dataclass(frozen=True)
class CheckOutcome:
    report_id: int
    checked: str
    result: CheckResult
    version: dict[str, Any] | None
    created_version: bool
    report: dict[str, Any]


def check_version(
    workspace: Workspace,
    ref: str,
    *,
    against: Sequence[str] = (),
    gates_config: GatesConfig | None = None,
    engine: Engine | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> CheckOutcome:
    project = workspace.project
    config = gates_config or project.config.gates
    with workspace.record.session() as session:
        version = resolve(session, ref)
        checked_ref, dataset_name = version.ref, version.dataset.name
        examples = load_examples(workspace, version)
        held_out = {}
        for other in against:
            other_version = resolve(session, other)
            held_out[other_version.ref] = load_examples(workspace, other_version)
        # Frozen gold sets always count as held out: a train set must never overlap them.
        for gold_ref, gold_examples in frozen_gold_sets(workspace, session).items():
            if gold_ref.split("@")[0] != dataset_name:
                held_out.setdefault(gold_ref, gold_examples)
    gates = build_gates(
        config, project.config.contract, against=held_out, token_counter=token_counter_for(workspace)
    )
    result = run_gates(examples, gates, engine=engine, progress=progress)
    report = {
        "version": checked_ref,
        "engine": engine.name if engine else "local",
        "against": list(held_out),
        **result.summary(),
        "gates": result.reports,
        "warnings": [asdict(w) for w in result.warnings[:1000]],
        "rejects": [
            {
                "example_id": r.example.id,
                "gate": r.gate,
                "reason": r.reason,
                "detail": r.detail,
                "location": r.example.provenance.location,
            }
            for r in result.rejected[:1000]
        ],
    }
    report_object = workspace.objects.put_bytes(json.dumps(report, sort_keys=True, default=str).encode())
    rejects_object = (
        workspace.objects.put_with(lambda p: pq.write_table(_rejects_table(result.rejected), p))
        if result.rejected
        else None
    )
    with workspace.record.session() as session:
        version = resolve(session, checked_ref)
        commit = None
        if result.passed and result.accepted:
            commit = commit_version(
                workspace,
                session,
                dataset_name,
                result.accepted,
                created_by="check",
                provenance={
                    "checked": checked_ref,
                    "gate_report_object": report_object,
                    "sources": version.provenance.get("sources", []),
                },
                note=f"check of {checked_ref}: {len(result.rejected)} quarantined",
                parent=version,
            )
        row = GateReport(
            checked_version_id=version.id,
            result_version_id=commit.version.id if commit else None,
            status="passed" if result.passed else "failed",
            n_checked=result.checked,
            n_accepted=len(result.accepted),
            n_quarantined=len(result.rejected),
            counts=result.counts,
            config=config.model_dump(mode="json"),
            against=list(held_out),
            report_object=report_object,
            rejects_object=rejects_object,
        )
        session.add(row)
        session.flush()
        summary = version_summary(commit.version) if commit else None
        return CheckOutcome(row.id, checked_ref, result, summary, bool(commit and commit.created), report)
