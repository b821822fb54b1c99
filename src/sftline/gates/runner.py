"""Runs the configured gates in order and applies their actions.

Examples a `block` flag hits are quarantined and do not reach later gates; `warn` flags are
reported and the example goes on. A gate's replacement (a PII redaction) takes the example's
place and counts as `redacted`. Every (gate, reason) has its own counter, and
`checked = accepted + quarantined` always holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sftline.config import GatesConfig, GateSettings
from sftline.contract.spec import Contract
from sftline.data.example import Example
from sftline.gates.balance import BalanceGate
from sftline.gates.base import Gate
from sftline.gates.contamination import ContaminationGate
from sftline.gates.engine import Engine, LocalEngine
from sftline.gates.exact import ConflictGate, ExactDuplicateGate
from sftline.gates.format import FormatGate
from sftline.gates.lengths import LengthGate, TokenCounter
from sftline.gates.near_duplicates import NearDuplicateGate
from sftline.gates.pii import PiiGate


@dataclass(frozen=True, slots=True)
class Rejected:
    example: Example
    gate: str
    reason: str
    detail: str
    related: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Warning:
    example_id: str
    gate: str
    reason: str
    detail: str


@dataclass
class CheckResult:
    checked: int
    accepted: list[Example]
    rejected: list[Rejected]
    warnings: list[Warning]
    counts: dict[str, dict[str, dict[str, int]]]
    """gate -> reason -> {"blocked": n, "warned": n, "redacted": n}."""
    reports: dict[str, dict[str, Any]]
    failures: list[str] = field(default_factory=list)
    """Set-level findings of gates whose action is `block` (e.g. a slice below its minimum share)."""

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> dict[str, Any]:
        return {
            "status": "passed" if self.passed else "failed",
            "checked": self.checked,
            "accepted": len(self.accepted),
            "quarantined": len(self.rejected),
            "warned": len({w.example_id for w in self.warnings}),
            "redacted": sum(r.get("redacted", 0) for g in self.counts.values() for r in g.values()),
            "counts": self.counts,
            "failures": self.failures,
        }


def build_gates(
    config: GatesConfig,
    contract: Contract,
    *,
    against: Mapping[str, Sequence[Example]],
    token_counter: TokenCounter,
) -> list[tuple[Gate, GateSettings]]:
    """The enabled gates in their order, each with its settings."""
    c = config
    gates: list[tuple[Gate, GateSettings]] = [
        (ExactDuplicateGate(), c.exact_duplicates),
        (ConflictGate(), c.conflicts),
        (
            NearDuplicateGate(
                threshold=c.near_duplicates.threshold,
                num_perm=c.near_duplicates.num_perm,
                field=c.near_duplicates.field,
            ),
            c.near_duplicates,
        ),
        (
            ContaminationGate(
                against,
                threshold=c.contamination.threshold,
                ngram=c.contamination.ngram,
                long_words=c.contamination.long_words,
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
    return [(gate, settings) for gate, settings in gates if settings.action != "off"]


def run_gates(
    examples: Sequence[Example],
    gates: Sequence[tuple[Gate, GateSettings]],
    *,
    engine: Engine | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> CheckResult:
    engine = engine or LocalEngine()
    survivors = list(examples)
    rejected: list[Rejected] = []
    warnings: list[Warning] = []
    counts: dict[str, dict[str, dict[str, int]]] = {}
    reports: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for position, (gate, settings) in enumerate(gates):
        if progress is not None:
            progress(position, len(gates), gate.name)
        features = getattr(gate, "features", None)
        if features is not None:
            outcome = gate.decide(survivors, engine.map(features, survivors))  # type: ignore[attr-defined]
        else:
            outcome = gate.check(survivors)
        reports[gate.name] = outcome.report
        gate_counts = counts.setdefault(gate.name, {})
        by_id = {e.id: e for e in survivors}
        blocked: set[str] = set()
        for flag in outcome.flags:
            tally = gate_counts.setdefault(flag.reason, {"blocked": 0, "warned": 0, "redacted": 0})
            if flag.example_id in outcome.replacements:
                tally["redacted"] += 1
            elif settings.action_for(flag.reason) == "block":
                if flag.example_id in blocked:
                    continue
                blocked.add(flag.example_id)
                tally["blocked"] += 1
                rejected.append(
                    Rejected(by_id[flag.example_id], gate.name, flag.reason, flag.detail, flag.related)
                )
            else:
                tally["warned"] += 1
                warnings.append(Warning(flag.example_id, gate.name, flag.reason, flag.detail))
        for finding in outcome.report.get("findings", []):
            share = f"{finding['share']:.2%}"
            message = f"{gate.name}: {finding['slice']}={finding['value']} is {share} of the examples"
            tally = gate_counts.setdefault(finding["reason"], {"blocked": 0, "warned": 0, "redacted": 0})
            if settings.action_for(finding["reason"]) == "block":
                tally["blocked"] += 1
                failures.append(message)
            else:
                tally["warned"] += 1
        survivors = [outcome.replacements.get(e.id, e) for e in survivors if e.id not in blocked]
    if progress is not None:
        progress(len(gates), len(gates), "done")
    return CheckResult(len(examples), survivors, rejected, warnings, counts, reports, failures)
