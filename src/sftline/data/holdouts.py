"""The split and mixture station: split a version into train and holdouts, freeze gold, mix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from sftline.data.example import Example
from sftline.data.mixtures import Component, mix
from sftline.data.splits import GOLD, SplitPlan, SplitResult, split_examples
from sftline.data.versions import commit_version, load_examples, resolve, version_summary
from sftline.errors import FrozenDatasetError
from sftline.gates.normalize import normalize_text
from sftline.record.schema import Dataset, FrozenGold, Mixture, Split
from sftline.record.workspace import Workspace


def frozen_gold_sets(workspace: Workspace, session: Session) -> dict[str, list[Example]]:
    """Every frozen gold set, by its version reference."""
    rows = session.scalars(select(FrozenGold)).all()
    return {row.version.ref: load_examples(workspace, row.version) for row in rows}


def gold_overlap(examples: Sequence[Example], gold: Sequence[Example], threshold: float = 0.8) -> set[int]:
    """Indices of `examples` that match a gold example exactly (normalised prompt) or nearly (MinHash)."""
    from sftline.gates.near_duplicates import NearDuplicateIndex

    exact = {normalize_text(g.prompt) for g in gold}
    hits = {i for i, e in enumerate(examples) if normalize_text(e.prompt) in exact}
    if gold:
        index = NearDuplicateIndex.build([g.prompt for g in gold], threshold=threshold)
        for i, found in enumerate(index.query([e.prompt for e in examples])):
            if found:
                hits.add(i)
    return hits


def _frozen_gold_for(session: Session, name: str) -> FrozenGold | None:
    dataset = session.scalars(select(Dataset).where(Dataset.name == name)).first()
    if dataset is None:
        return None
    return session.scalars(select(FrozenGold).where(FrozenGold.dataset_id == dataset.id)).first()


def split_version(workspace: Workspace, ref: str, plan: SplitPlan) -> dict[str, Any]:
    with workspace.record.session() as session:
        source = resolve(session, ref)
        source_ref, base = source.ref, source.dataset.name
        examples = load_examples(workspace, source)
        frozen = _frozen_gold_for(session, f"{base}-gold")
        frozen_examples = load_examples(workspace, frozen.version) if frozen else []
    frozen_hits = gold_overlap(examples, frozen_examples) if frozen else None
    result = split_examples(examples, replace(plan, gold=0.0) if frozen else plan, frozen_gold=frozen_hits)
    assignments = _assignments_table(result)
    assignments_object = workspace.objects.put_with(lambda p: pq.write_table(assignments, p))
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
        split_id = row.id
    return {
        "split_id": split_id,
        "source": source_ref,
        "parts": parts,
        "groups": result.groups,
        "largest_group": result.largest_group,
        "notes": result.notes,
        "seed": plan.seed,
    }


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
        existing = session.scalars(
            select(FrozenGold).where(FrozenGold.dataset_id == version.dataset_id)
        ).first()
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


def mix_versions(
    workspace: Workspace,
    refs: Sequence[str],
    components: Sequence[Component],
    *,
    total: int | None,
    seed: int,
    name: str | None,
) -> dict[str, Any]:
    pool: list[Example] = []
    sources = []
    with workspace.record.session() as session:
        for ref in refs:
            version = resolve(session, ref)
            sources.append({"ref": version.ref, "content_hash": version.content_hash})
            dataset_name = version.dataset.name
            for example in load_examples(workspace, version):
                tags = {**example.tags, "dataset": dataset_name}
                identifier = example.id if len(refs) == 1 else f"{dataset_name}:{example.id}"
                pool.append(replace(example, id=identifier, tags=tags))
        gold = frozen_gold_sets(workspace, session)
    target_name = name or f"{sources[0]['ref'].split('@')[0]}-mix"
    size = total if total is not None else len(pool)
    result = mix(pool, components, total=size, seed=seed)
    for gold_ref, gold_examples in gold.items():
        overlap = gold_overlap(result.examples, gold_examples)
        if overlap:
            first = result.examples[min(overlap)]
            raise FrozenDatasetError(
                f"the mixture overlaps the frozen gold set {gold_ref}: {len(overlap)} examples "
                f"(first: {first.id}, {first.provenance.location}); split before mixing"
            )
    with workspace.record.session() as session:
        commit = commit_version(
            workspace,
            session,
            target_name,
            result.examples,
            created_by="mix",
            provenance={"mixture_of": sources, "components": result.report, "seed": seed, "total": size},
            note=f"mixture of {', '.join(s['ref'] for s in sources)} (seed {seed})",
        )
        row = Mixture(
            sources=sources,
            components=result.report,
            total=size,
            seed=seed,
            result_version_id=commit.version.id,
        )
        session.add(row)
        session.flush()
        return {
            "mixture_id": row.id,
            "version": version_summary(commit.version),
            "created": commit.created,
            "components": result.report,
            "total": size,
            "seed": seed,
        }
