"""The mixture station: sample a training set with fixed proportions per slice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sftline.data.example import Example
from sftline.data.mixtures import Component, mix, parse_weights
from sftline.data.settings import MixSettings
from sftline.data.splits import gold_overlap
from sftline.data.versions import version_summary
from sftline.errors import FrozenDatasetError
from sftline.record import queries
from sftline.record.queries import resolve
from sftline.record.schema import Mixture
from sftline.record.workspace import Workspace
from sftline.stations.runner import ArtifactRef, Produced, StationResult, Work, run_station
from sftline.stations.split import frozen_gold_sets
from sftline.stations.versions import SETTLE_ATTEMPTS, commit_version, load_examples, retry_on_conflict


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
        target_name = mixture_name(name, sources[0]["ref"])
        # The target's head before mixing: the mixture is committed as a compare-and-set on it.
        expected = queries.head_numbers(session, [target_name])[target_name]
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

    def commit_mixture() -> dict[str, Any]:
        with workspace.record.session() as session:
            commit = commit_version(
                workspace,
                session,
                target_name,
                result.examples,
                created_by="mix",
                provenance={"mixture_of": sources, "components": result.report, "seed": seed, "total": size},
                note=f"mixture of {', '.join(s['ref'] for s in sources)} (seed {seed})",
                expected=expected,
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

    return retry_on_conflict(workspace, commit_mixture, attempts=SETTLE_ATTEMPTS)


def mixture_name(name: str | None, first_source: str) -> str:
    """The mixture's dataset name: as given, or the first source's name with `-mix`."""
    return name or f"{first_source.split('@')[0]}-mix"


def mix_work(workspace: Workspace, settings: MixSettings) -> Work:
    """The source versions, every frozen gold set (a mixture must not overlap one), the weights."""
    with workspace.record.session() as session:
        inputs = []
        for ref in settings.sources:
            version = resolve(session, ref)
            inputs.append(ArtifactRef("dataset_version", version.ref, version.content_hash))
        inputs += [
            ArtifactRef("dataset_version", gold.version.ref, gold.content_hash)
            for gold in queries.frozen_gold_rows(session)
        ]
    shaping = settings.model_dump(mode="json", exclude={"sources", "name"})
    shaping["sources"] = len(settings.sources)
    shaping["name"] = mixture_name(settings.name, inputs[0].name)
    label = f"mix {', '.join(i.name for i in inputs[: len(settings.sources)])}"
    return Work("mix", label, tuple(inputs), shaping)


def mix_station(workspace: Workspace, settings: MixSettings, *, force: bool = False) -> StationResult:
    """`data mix` as a station; its outputs are the mixture's version and the mixture record."""
    work = mix_work(workspace, settings)

    def execute() -> Produced:
        result = mix_versions(
            workspace,
            [ref.name for ref in work.inputs[: len(settings.sources)]],
            parse_weights(settings.weights),
            total=settings.total,
            seed=settings.seed,
            name=settings.name,
        )
        version = result["version"]
        outputs = [
            ArtifactRef("dataset_version", version["ref"], version["content_hash"]),
            ArtifactRef("mixture", f"mixture-{result['mixture_id']}", version["content_hash"]),
        ]
        return Produced(outputs, result)

    return run_station(workspace, work, execute, force=force)
