"""`sftline retrain`: feedback back into the line, and the result back into the registry.

1. With `--if-triggered`, nothing happens unless monitoring recorded a retraining trigger (drift,
   an SLO burning, enough new labels) that no retrain has handled yet.
2. The feedback dataset's next version is written from every label so far and gated.
3. The line runs (`sftline run`, under its lock). It must read the feedback dataset, in `mix:`
   or `train:`; only the stations downstream of a changed input run again, so the gold set, the
   splits and the release suite stay exactly what every earlier model was measured on.
4. The new run is registered as a candidate and, by default, put through the registry's
   evidence-gated promotion to canary (the release verdict on the release suite against
   production). Never straight to production.
5. The triggers it acted on are marked handled, with what the retrain did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sftline.errors import ConfigError
from sftline.record import queries
from sftline.record.workspace import Workspace
from sftline.stations.feedback import build_feedback_dataset, feedback_dataset
from sftline.stations.line import LineHooks, line_lock, run_line
from sftline.stations.registry import promote, register_run


@dataclass
class Retrain:
    status: str
    """not_triggered, failed, unchanged (the line made no new model), registered or promoted."""
    model: str
    triggers: list[str] = field(default_factory=list)
    feedback: dict[str, Any] | None = None
    line: dict[str, Any] | None = None
    registered: str | None = None
    run: str | None = None
    promotion: dict[str, Any] | None = None
    message: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "model": self.model,
            "triggers": self.triggers,
            "feedback": self.feedback,
            "line": self.line,
            "registered": self.registered,
            "run": self.run,
            "promotion": self.promotion,
            "message": self.message,
        }


def line_reads(workspace: Workspace, dataset: str) -> bool:
    """Whether the line's mixture or training data names `dataset`."""
    line = workspace.project.config.line
    if line is None:
        return False
    names = [ref.split("@")[0] for ref in (line.mix.sources if line.mix else [])]
    if line.train is not None:
        names.append(line.train.data.split("@")[0])
    return dataset in names


def retrain(
    workspace: Workspace,
    *,
    model_name: str | None = None,
    if_triggered: bool = False,
    wait: bool = False,
    hooks: LineHooks | None = None,
    say: Callable[[str], None] | None = None,
) -> Retrain:
    config = workspace.project.config
    name = model_name or config.effective_model_name
    tell = say or (lambda _: None)
    with workspace.record.session() as session:
        triggers = [
            a for a in queries.alerts(session, model_name=name, status="firing", kind="retrain_trigger")
        ]
        trigger_ids = [a.id for a in triggers]
        trigger_names = [a.name for a in triggers]
    if if_triggered and not triggers:
        return Retrain("not_triggered", name, message="no retraining trigger is firing")
    if config.line is None:
        raise ConfigError("retrain runs the line: sftline.yaml has no `line:` section")
    dataset = feedback_dataset(name)
    if not line_reads(workspace, dataset):
        raise ConfigError(
            f"the line does not read {dataset}: add it to line.mix.from (or make it line.train.data) "
            "in sftline.yaml, so the feedback reaches training"
        )
    tell(f"building {dataset} from the labels so far")
    feedback = build_feedback_dataset(workspace, name)
    if feedback is None:
        raise ConfigError(
            f"no labelled feedback for {name} yet: `sftline feedback import` or `sftline review import` first"
        )
    tell("running the line")
    with line_lock(workspace, wait=wait):
        result = run_line(workspace, config.line, hooks=hooks)
    outcome = Retrain("failed", name, trigger_names, feedback, result.as_json())
    if result.error is not None:
        outcome.message = f"the line failed: {result.error}"
        return outcome
    train = next((s for s in result.stations if s.station == "train"), None)
    run_name = train.result.get("run") if train is not None else None
    if run_name is None:
        outcome.message = "the line has no train station: nothing to register"
        return outcome
    outcome.run = run_name
    registered = register_run(workspace, run_name, name=name)
    outcome.registered = registered.ref
    if not registered.created:
        outcome.status = "unchanged"
        outcome.message = (
            f"the line's model is {registered.ref} already ({registered.stage}): nothing new to promote"
        )
    elif config.monitoring.retrain.promote_to == "canary":
        tell(f"promoting {registered.ref} to canary on its release verdict")
        promotion = promote(
            workspace, registered.ref, "canary", reason=f"retrain: {', '.join(trigger_names) or 'by hand'}"
        )
        outcome.promotion = promotion.as_json()
        outcome.status = "promoted" if promotion.status == "promoted" else "registered"
        outcome.message = (
            f"{registered.ref} is the canary now"
            if promotion.status == "promoted"
            else f"{registered.ref} stays a candidate: promotion {promotion.status} "
            f"({promotion.verdict or 'no verdict'})"
        )
    else:
        outcome.status = "registered"
        outcome.message = f"{registered.ref} registered as a candidate"
    now = datetime.now(timezone.utc)
    with workspace.record.session() as session:
        for alert in queries.alerts(session, model_name=name, kind="retrain_trigger"):
            if alert.id in trigger_ids:
                alert.status, alert.resolved_at = "handled", now
                alert.details = {
                    **alert.details,
                    "retrain": {"status": outcome.status, "registered": outcome.registered},
                }
    return outcome
