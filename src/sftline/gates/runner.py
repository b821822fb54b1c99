"""Runs the configured gates and applies their actions.

Every gate sees every example, so an example's reasons are all the reasons any gate gave it, and
each (gate, reason) counter counts every example with that reason. Gates run by stage
(`sftline.gates.base`): the `examples` gates in their configured order, then the `duplicates`
gates, told which examples the others block, then the `set` gates on the accepted examples.
Each gate sees the examples as the gates before it in the configured order left them: a PII
redaction replaces an example for the gates after the PII gate, and counts as `redacted`. An
example any `block` reason hits is quarantined; `checked = accepted + quarantined` always holds.

A gate whose `check` takes `engine` gets the engine (the near-duplicate gate searches its pairs
there), and one whose `check` takes `source` gets the Parquet file the examples were read from,
while no gate before it has replaced an example (so the file still holds what it sees).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sftline.config import GatesConfig, GateSettings
from sftline.contract.spec import Contract
from sftline.data.common_text import CommonText
from sftline.data.example import Example
from sftline.gates.balance import BalanceGate
from sftline.gates.base import Gate, GateOutcome, Stage
from sftline.gates.contamination import ContaminationGate
from sftline.gates.engine import Engine, LocalEngine
from sftline.gates.exact import ConflictGate, ExactDuplicateGate
from sftline.gates.format import FormatGate
from sftline.gates.label_noise import Encode, LabelNoiseGate
from sftline.gates.lengths import LengthGate, TokenCounter
from sftline.gates.near_duplicates import NearDuplicateGate
from sftline.gates.pii import PiiGate
from sftline.gates.semantic_duplicates import SemanticDuplicateGate

ReasonAction = Literal["block", "warn", "redact"]
_TALLY = {"block": "blocked", "warn": "warned", "redact": "redacted"}
_STAGES: dict[Stage, int] = {"examples": 0, "duplicates": 1, "set": 2}


@dataclass(frozen=True, slots=True)
class Reason:
    """One gate's reason for flagging an example, with the action taken for it."""

    gate: str
    reason: str
    detail: str
    action: ReasonAction
    field: str | None = None
    related: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FlaggedExample:
    """An example some gate flagged, with every reason any gate gave it, in gate order."""

    example: Example
    """As the gates left it (redacted, where the PII gate redacts)."""
    reasons: tuple[Reason, ...]
    suggested_label: str | None = None
    label_confidence: float | None = None

    @property
    def blocked(self) -> bool:
        return any(r.action == "block" for r in self.reasons)

    @property
    def action(self) -> Literal["block", "warn"]:
        """`block` when any reason blocks it (quarantined), else `warn` (kept)."""
        return "block" if self.blocked else "warn"


@dataclass
class CheckResult:
    checked: int
    accepted: list[Example]
    flagged: list[FlaggedExample]
    """Every flagged example, blocked or kept, in the checked order."""
    counts: dict[str, dict[str, dict[str, int]]]
    """gate -> reason -> {"blocked": n, "warned": n, "redacted": n}: examples with that reason."""
    reports: dict[str, dict[str, Any]]
    failures: list[str] = field(default_factory=list)
    """Set-level findings of gates whose action is `block` (e.g. a slice below its minimum share)."""

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def rejected(self) -> list[FlaggedExample]:
        """The quarantined examples."""
        return [f for f in self.flagged if f.blocked]

    def summary(self) -> dict[str, Any]:
        kept = [f for f in self.flagged if not f.blocked]
        return {
            "status": "passed" if self.passed else "failed",
            "checked": self.checked,
            "accepted": len(self.accepted),
            "quarantined": len(self.flagged) - len(kept),
            "warned": sum(any(r.action == "warn" for r in f.reasons) for f in kept),
            "redacted": sum(any(r.action == "redact" for r in f.reasons) for f in self.flagged),
            "counts": self.counts,
            "failures": self.failures,
        }


def build_gates(
    config: GatesConfig,
    contract: Contract,
    *,
    against: Mapping[str, Sequence[Example]],
    common: CommonText,
    token_counter: TokenCounter,
    encode: Encode | None = None,
) -> list[tuple[Gate, GateSettings]]:
    """The enabled gates in their order, each with its settings. `common` is the shared text the
    duplicate and contamination gates leave out (`sftline.data.common_text.find_common_text`).
    `encode` embeds texts for the label-noise and semantic-duplicate gates (the station passes the
    embedded MiniLM); without it those two are left out."""
    c = config
    near = c.near_duplicates
    gates: list[tuple[Any, GateSettings]] = [
        (ExactDuplicateGate(common), c.exact_duplicates),
        (ConflictGate(common), c.conflicts),
        (
            NearDuplicateGate(
                threshold=near.threshold, num_perm=near.num_perm, field=near.field, common=common
            ),
            near,
        ),
        (
            ContaminationGate(
                against,
                threshold=c.contamination.threshold,
                ngram=c.contamination.ngram,
                long_words=c.contamination.long_words,
                common=common,
            ),
            c.contamination,
        ),
        (PiiGate(action=c.pii.mode, kinds=c.pii.kinds), c.pii),
        (FormatGate(contract), c.format),
        (
            LengthGate(
                token_counter,
                max_length=contract.limits.max_length,
                min_target_tokens=c.lengths.min_target_tokens,
                extreme_factor=c.lengths.extreme_factor,
            ),
            c.lengths,
        ),
        (BalanceGate(min_share=c.balance.min_share, tags=c.balance.tags), c.balance),
    ]
    if encode is not None:
        label_noise, semantic = c.label_noise, c.semantic_duplicates
        gates += [
            (
                LabelNoiseGate(
                    encode, contract, folds=label_noise.folds, seed=label_noise.seed, common=common
                ),
                label_noise,
            ),
            (SemanticDuplicateGate(encode, threshold=semantic.threshold, common=common), semantic),
        ]
    return [(gate, settings) for gate, settings in gates if settings.action != "off"]


def _stage(gate: Gate) -> Stage:
    stage: Stage = getattr(gate, "stage", "examples")
    return stage


def _outcome(
    gate: Any,
    examples: list[Example],
    engine: Engine,
    blocked: frozenset[str] | None,
    source: Path | None,
) -> GateOutcome:
    options: dict[str, Any] = {} if blocked is None else {"blocked": blocked}
    features = getattr(gate, "features", None)
    if features is not None:
        return gate.decide(examples, engine.map(features, examples), **options)  # type: ignore[no-any-return]
    takes = inspect.signature(gate.check).parameters
    if "engine" in takes:
        options["engine"] = engine
    if "source" in takes and source is not None:
        options["source"] = source
    return gate.check(examples, **options)  # type: ignore[no-any-return]


def _replaced(examples: Sequence[Example], replacements: Sequence[Mapping[str, Example]]) -> list[Example]:
    """The examples with each gate's replacements applied in turn."""
    result = list(examples)
    for by_id in replacements:
        if by_id:
            result = [by_id.get(e.id, e) for e in result]
    return result


def run_gates(
    examples: Sequence[Example],
    gates: Sequence[tuple[Gate, GateSettings]],
    *,
    engine: Engine | None = None,
    source: Path | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> CheckResult:
    """`source`: a Parquet file of the same examples (the checked version's object), for engines
    that read the examples on their workers."""
    engine = engine or LocalEngine()
    order = sorted(range(len(gates)), key=lambda p: (_STAGES[_stage(gates[p][0])], p))
    counts: dict[str, dict[str, dict[str, int]]] = {gate.name: {} for gate, _ in gates}
    reports: dict[str, dict[str, Any]] = {gate.name: {} for gate, _ in gates}
    found: dict[str, list[tuple[int, Reason]]] = {}
    hints: dict[str, tuple[str | None, float | None]] = {}
    replacements: dict[int, dict[str, Example]] = {}
    blocked: set[str] = set()
    failures: list[str] = []
    for step, position in enumerate(order):
        gate, settings = gates[position]
        if progress is not None:
            progress(step, len(gates), gate.name)
        stage = _stage(gate)
        if stage == "set":
            everything = _replaced(examples, [replacements[p] for p in sorted(replacements)])
            seen = [e for e in everything if e.id not in blocked]
            unchanged = False
        else:
            before = [replacements[p] for p in sorted(replacements) if p < position]
            seen = _replaced(examples, before)
            unchanged = not any(before)
        only_blocked = frozenset(blocked) if stage == "duplicates" else None
        outcome = _outcome(gate, seen, engine, only_blocked, source if unchanged else None)
        reports[gate.name] = outcome.report
        replacements[position] = outcome.replacements
        gate_counts = counts[gate.name]
        for flag in outcome.flags:
            action = "redact" if flag.example_id in outcome.replacements else settings.action_for(flag.reason)
            reasons = found.setdefault(flag.example_id, [])
            if action == "off" or any(r.gate == gate.name and r.reason == flag.reason for _, r in reasons):
                continue
            reason = Reason(gate.name, flag.reason, flag.detail, action, flag.field, flag.related)
            reasons.append((position, reason))
            tally = gate_counts.setdefault(flag.reason, {"blocked": 0, "warned": 0, "redacted": 0})
            tally[_TALLY[action]] += 1
            if action == "block":
                blocked.add(flag.example_id)
            if flag.suggested_label is not None or flag.label_confidence is not None:
                hints[flag.example_id] = (flag.suggested_label, flag.label_confidence)
        for finding in outcome.report.get("findings", []):
            share = f"{finding['share']:.2%}"
            message = f"{gate.name}: {finding['slice']}={finding['value']} is {share} of the examples"
            tally = gate_counts.setdefault(finding["reason"], {"blocked": 0, "warned": 0, "redacted": 0})
            if settings.action_for(finding["reason"]) == "block":
                tally["blocked"] += 1
                failures.append(message)
            else:
                tally["warned"] += 1
    if progress is not None:
        progress(len(gates), len(gates), "done")
    final = _replaced(examples, [replacements[p] for p in sorted(replacements)])
    flagged = [
        FlaggedExample(
            example,
            tuple(reason for _, reason in sorted(found[example.id], key=lambda pair: pair[0])),
            *hints.get(example.id, (None, None)),
        )
        for example in final
        if found.get(example.id)
    ]
    accepted = [e for e in final if e.id not in blocked]
    return CheckResult(len(examples), accepted, flagged, counts, reports, failures)
