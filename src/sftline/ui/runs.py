"""The Runs pages: every training run, and one run's config, curves, throughput, checkpoints and
the trained-token masks of a few of its examples (what `sftline train --show-masks` prints)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from sftline.contract.render import mask_spans, render_chat
from sftline.data.parquet_io import read_examples
from sftline.record import leases, queries
from sftline.record.schema import Run
from sftline.record.workspace import Workspace
from sftline.reports.svg import line_chart
from sftline.ui.format import Page

MASKED_EXAMPLES = 3
LOSSES = ("loss", "eval_loss")
THROUGHPUT = ("tokens_per_second",)
NOT_HOLDOUT = {"eval_loss"}


def run_status(run: Run) -> str:
    """As `sftline runs list` shows it: a `running` run whose lease went stale is interrupted."""
    return "interrupted" if run.status == "running" and leases.is_stale(run) else run.status


def runs_page(session: Session, page: Page) -> dict[str, Any]:
    rows, total = queries.runs_page(session, offset=page.offset, limit=page.size)
    refs = queries.version_refs(session, [r.data_version_id for r in rows])
    return {
        "runs": [
            {
                "name": r.name,
                "status": run_status(r),
                "base": r.base_model,
                "data": refs.get(r.data_version_id, "?"),
                "steps": r.steps,
                "tokens": r.trained_tokens,
                "final_loss": r.summary.get("final_loss"),
                "started_at": r.started_at,
            }
            for r in rows
        ],
        "page": page.counted(total),
    }


def curves(points: list[tuple[int, str, float]]) -> dict[str, str]:
    """The run's metrics as charts: losses, holdout metrics (eval_*), throughput, learning rate."""
    series: dict[str, list[tuple[float, float]]] = {}
    for step, name, value in points:
        series.setdefault(name, []).append((step, value))

    def chart(names: list[str], y_label: str) -> str:
        chosen = {n: series[n] for n in names if n in series}
        return line_chart(chosen, x_label="step", y_label=y_label) if chosen else ""

    holdout = sorted(n for n in series if n.startswith("eval_") and n not in NOT_HOLDOUT)
    return {
        "loss": chart(list(LOSSES), "loss"),
        "holdout": chart(holdout, "holdout metric"),
        "throughput": chart(list(THROUGHPUT), "tokens/s"),
        "lr": chart(["lr"], "learning rate"),
    }


def checkpoints(run: Run) -> list[dict[str, Any]]:
    """The run's checkpoint folders on disk (`checkpoints/step-N`, `checkpoints/best/step-N`)."""
    folder = Path(run.output_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = sorted(folder.glob("step-*")) + sorted(folder.glob("best/step-*"))
    return [
        {
            "path": str(p.relative_to(folder)),
            "size": sum(f.stat().st_size for f in p.rglob("*") if f.is_file()),
        }
        for p in found
        if p.is_dir()
    ]


def run_page(session: Session, name: str) -> dict[str, Any]:
    run = queries.get_run(session, name)
    points = [(m.step, m.name, m.value) for m in queries.run_metrics(session, run)]
    refs = queries.version_refs(
        session, [v for v in (run.data_version_id, run.eval_version_id) if v is not None]
    )
    latest = {n: v for _, n, v in points}
    return {
        "run": run,
        "status": run_status(run),
        "data": refs.get(run.data_version_id, "?"),
        "holdout": refs.get(run.eval_version_id) if run.eval_version_id is not None else None,
        "config": json.dumps(run.config, indent=1, sort_keys=True, default=str),
        "summary": {k: v for k, v in run.summary.items() if not isinstance(v, dict | list)},
        "throughput": latest.get("tokens_per_second"),
        "charts": curves(points),
        "checkpoints": checkpoints(run),
    }


@lru_cache(maxsize=4)
def _tokenizer(path: str) -> Any:
    """A base model's tokenizer, loaded once per dashboard process (it never changes: the folder
    is named by its content in the record)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def masks_page(workspace: Workspace, session: Session, name: str) -> dict[str, Any]:
    """The first examples of the run's training data as training renders them, trained tokens
    marked. Read from the record and the base model's folder; nothing is pulled or written."""
    run = queries.get_run(session, name)
    shown: dict[str, Any] = {"run": run.name, "examples": [], "problem": None}
    base = queries.base_model_named(session, run.base_model)
    version = queries.version_by_id(session, run.data_version_id)
    if base is None or not Path(base.path).is_dir():
        shown["problem"] = f"the base model {run.base_model!r} is not in this project's folder"
    elif base.kind != "causal-lm":
        shown["problem"] = f"{run.base_model} is a {base.kind}: a classifier trains its head on every example"
    elif version is None:
        shown["problem"] = "the run's data version is no longer in the record"
    if shown["problem"]:
        return shown
    assert version is not None and base is not None
    tokenizer = _tokenizer(base.path)
    examples = read_examples(workspace.objects.get_bytes(version.object_hash))[:MASKED_EXAMPLES]
    system_prompt = workspace.project.config.contract.system_prompt
    for example in examples:
        rendered = render_chat(tokenizer, example, system_prompt=system_prompt)
        shown["examples"].append(
            {
                "id": example.id,
                "trained": rendered.n_trained,
                "tokens": len(rendered.input_ids),
                "spans": mask_spans(tokenizer, rendered),
            }
        )
    return shown
