"""The split and mixture station: split a version into train and holdouts, freeze gold, mix."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from sftline.data.example import Example
from sftline.data.settings import SplitSettings
from sftline.data.splits import (
    GOLD,
    ROLLING,
    TRAIN,
    SplitPlan,
    SplitResult,
    TargetedHoldout,
    gold_overlap,
    split_examples,
)
from sftline.errors import FrozenDatasetError
from sftline.record import queries
from sftline.record.queries import resolve
from sftline.record.schema import FrozenGold, Split
from sftline.record.workspace import Workspace
from sftline.stations.runner import ArtifactRef, Produced, StationResult, Work, run_station, station_key
from sftline.stations.versions import SETTLE_ATTEMPTS, commit_version, load_examples, retry_on_conflict


def frozen_gold_sets(workspace: Workspace, session: Session) -> dict[str, list[Example]]:
    """Every frozen gold set, by its version reference."""
    return {
        row.version.ref: load_examples(workspace, row.version) for row in queries.frozen_gold_rows(session)
    }


def split_version(workspace: Workspace, ref: str, plan: SplitPlan) -> dict[str, Any]:
    with workspace.record.session() as session:
        source = resolve(session, ref)
        source_ref, base = source.ref, source.dataset.name
        examples = load_examples(workspace, source)
        frozen = queries.frozen_gold_named(session, f"{base}-gold")
        frozen_examples = load_examples(workspace, frozen.version) if frozen else []
        # The parts' heads before the split: each part is committed as a compare-and-set on its own.
        expected = queries.head_numbers(session, [f"{base}-{part}" for part in _possible_parts(plan)])
    frozen_hits = gold_overlap(examples, frozen_examples) if frozen else None
    result = split_examples(examples, replace(plan, gold=0.0) if frozen else plan, frozen_gold=frozen_hits)
    assignments = _assignments_table(result)
    assignments_object = workspace.objects.put_with(lambda p: pq.write_table(assignments, p))

    def commit_parts() -> tuple[int, dict[str, Any]]:
        """One transaction: every part's version and the split's row, or none of them."""
        parts: dict[str, Any] = {}
        with workspace.record.session() as session:
            source = resolve(session, source_ref)
            for part, part_examples in sorted(result.parts.items()):
                if part == GOLD and frozen is not None:
                    parts[part] = {
                        "dataset": f"{base}-gold",
                        "version": resolve(session, f"{base}-gold").ref,
                        "examples": len(frozen_examples),
                        "frozen": True,
                        "held_out_from_source": len(part_examples),
                    }
                    continue
                name = f"{base}-{part}"
                commit = commit_version(
                    workspace,
                    session,
                    name,
                    part_examples,
                    created_by="split",
                    provenance={
                        "split_of": source_ref,
                        "part": part,
                        "seed": plan.seed,
                        "assignments_object": assignments_object,
                    },
                    note=f"{part} part of {source_ref} (seed {plan.seed})",
                    expected=expected[name],
                )
                parts[part] = {
                    "dataset": name,
                    "version": commit.version.ref,
                    "content_hash": commit.version.content_hash,
                    "examples": len(part_examples),
                    "created": commit.created,
                }
            row = Split(
                source_version_id=source.id,
                seed=plan.seed,
                plan=_plan_json(plan),
                parts=parts,
                assignments_object=assignments_object,
            )
            session.add(row)
            session.flush()
            return row.id, parts

    split_id, parts = retry_on_conflict(workspace, commit_parts, attempts=SETTLE_ATTEMPTS)
    return {
        "split_id": split_id,
        "source": source_ref,
        "parts": parts,
        "groups": result.groups,
        "largest_group": result.largest_group,
        "notes": result.notes,
        "seed": plan.seed,
    }


def _possible_parts(plan: SplitPlan) -> list[str]:
    """Every part a split by `plan` may make (train, the holdouts), before it is made."""
    return [TRAIN, GOLD, ROLLING, *(targeted.part for targeted in plan.targeted)]


def _plan_json(plan: SplitPlan) -> dict[str, Any]:
    data = asdict(plan)
    data["targeted"] = [{"match": t.match, "share": t.share} for t in plan.targeted]
    return data


def _assignments_table(result: SplitResult) -> pa.Table:
    rows = [
        {"example_id": e.id, "content_hash": e.content_hash, "part": part}
        for part, examples in result.parts.items()
        for e in examples
    ]
    return pa.Table.from_pylist(
        rows,
        schema=pa.schema([("example_id", pa.string()), ("content_hash", pa.string()), ("part", pa.string())]),
    )


def freeze_gold(workspace: Workspace, ref: str) -> dict[str, Any]:
    with workspace.record.session() as session:
        version = resolve(session, ref)
        existing = queries.frozen_gold_of(session, version.dataset)
        if existing is not None:
            if existing.content_hash != version.content_hash:
                raise FrozenDatasetError(
                    f"{version.dataset.name} is frozen at {existing.version.ref} "
                    f"({existing.content_hash[:12]}); a gold set never changes"
                )
            return {
                "gold": existing.version.ref,
                "content_hash": existing.content_hash,
                "created": False,
                "frozen_at": existing.frozen_at.isoformat(),
            }
        row = FrozenGold(
            dataset_id=version.dataset_id, version_id=version.id, content_hash=version.content_hash
        )
        session.add(row)
        session.flush()
        return {
            "gold": version.ref,
            "content_hash": version.content_hash,
            "examples": version.n_examples,
            "created": True,
            "frozen_at": row.frozen_at.isoformat(),
        }


def _plan(settings: SplitSettings) -> SplitPlan:
    return SplitPlan(
        gold=settings.gold,
        rolling_days=settings.rolling_days,
        time_field=settings.time_field,
        targeted=tuple(TargetedHoldout.parse(t) for t in settings.targeted),
        group_by=settings.group_by,
        seed=settings.seed,
    )


def split_work(workspace: Workspace, settings: SplitSettings) -> Work:
    """The source version, the frozen gold set it must reuse (if any), and the plan.

    A gold set frozen by this very split (same source, same plan) is its output, not an input:
    the split found again is the one that made it, so a re-run is cached instead of re-splitting
    around its own gold set."""
    plan = _plan(settings)
    with workspace.record.session() as session:
        source = resolve(session, settings.dataset)
        # The parts are named after the source: NAME-train, NAME-gold, ...
        shaping = {
            "dataset": source.dataset.name,
            "plan": _plan_json(plan),
            "freeze_gold": settings.freeze_gold,
        }
        inputs = [ArtifactRef("dataset_version", source.ref, source.content_hash)]
        label = f"split {source.ref}"
        frozen = queries.frozen_gold_named(session, f"{source.dataset.name}-gold")
        if frozen is None:
            return Work("split", label, tuple(inputs), shaping)
        gold = ArtifactRef("dataset_version", frozen.version.ref, frozen.content_hash)
        made_it = queries.succeeded_station_run(session, "split", station_key("split", inputs, shaping))
        if made_it is not None and gold.as_json() in made_it.outputs:
            return Work("split", label, tuple(inputs), shaping)
    return Work("split", label, (*inputs, gold), shaping)


def split_station(workspace: Workspace, settings: SplitSettings, *, force: bool = False) -> StationResult:
    """`data split` (and `--freeze-gold`) as a station; its outputs are the parts' versions."""
    work = split_work(workspace, settings)

    def execute() -> Produced:
        result = split_version(workspace, work.inputs[0].name, _plan(settings))
        if settings.freeze_gold and not result["parts"].get(GOLD, {}).get("frozen"):
            result["frozen"] = freeze_gold(workspace, result["parts"][GOLD]["version"])
        with workspace.record.session() as session:
            # A frozen gold set reused by this split is its input, not its output.
            made = [part for part in result["parts"].values() if not part.get("frozen")]
            versions = [resolve(session, part["version"]) for part in made]
            outputs = [ArtifactRef("dataset_version", v.ref, v.content_hash) for v in versions]
            row = queries.split_by_id(session, result["split_id"])
            assert row is not None
            outputs.append(ArtifactRef("split", f"split-{row.id}", row.assignments_object))
        return Produced(outputs, result)

    return run_station(workspace, work, execute, force=force)
