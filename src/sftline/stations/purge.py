"""`sftline data purge`: carry out a data subject's erasure request.

For every dataset (or the ones named) whose newest version holds examples that match
(`sftline.data.erasure`), the newest version without them becomes the next version, written by
`commit_version`, the path imports take: its content hash, stats and changelog (a diff from its
parent) come out as for any version. One `erasures` row records the request: the matches as the
sha256 of their values, the reason, per dataset the versions and the counts, never the content.
The report names what was made from the erased examples: the runs that trained on (or held out)
a version holding any of them, directly or through anything the lineage says was made from such
a version, so they can be retrained; and the evaluations whose stored outputs hold their text.

What it cannot do: a version is immutable, so the older versions keep the examples in their
objects (the report lists them); evaluations' stored outputs, import quarantines, gate-report
rejects and the source files outside the project may hold them too; a model trained on them may
have learnt them. A frozen gold set is rewritten (and its new version frozen) only when asked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from sftline.data.erasure import ExampleMatch, matches_any
from sftline.data.example import Example
from sftline.record import queries
from sftline.record.lineage import descendants
from sftline.record.schema import Dataset, DatasetVersion, FrozenGold
from sftline.record.workspace import Workspace
from sftline.stations.runner import ArtifactRef, Produced, Work, run_station
from sftline.stations.versions import REBASE_ATTEMPTS, commit_version, load_examples, retry_on_conflict

Progress = Callable[[int, int], None]
RESIDUE = (
    "older versions are immutable and still hold the erased examples (listed under still_holding; "
    "their Parquet objects are in .sftline/objects); sftline cannot delete a version yet",
    "import quarantines and gate-report rejects may hold a matching record as it was read",
    "the source files outside the project, and models trained on the examples, are untouched: "
    "retrain the runs listed",
)
"""What a purge leaves, said in every report."""


@dataclass
class DatasetPurge:
    dataset: str
    status: str
    """purged, would purge (a dry run), no match, or blocked (a frozen gold set)."""
    source: str
    """The newest version searched, `NAME@vN`."""
    before: int
    removed: int
    written: str | None = None
    """The version written without the matches."""

    @property
    def after(self) -> int:
        return self.before - self.removed

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "after": self.after}


@dataclass
class PurgeReport:
    matches: list[ExampleMatch]
    reason: str | None
    dry_run: bool
    datasets: list[DatasetPurge] = field(default_factory=list)
    still_holding: list[str] = field(default_factory=list)
    """Every version searched that holds matching examples: versions are immutable, so they keep
    them (a purged newest version among them; the version written without them is not)."""
    runs: list[dict[str, str]] = field(default_factory=list)
    """{"run", "status", "via"}: trained on (or held out) a version that held matching examples."""
    evaluations: list[dict[str, str]] = field(default_factory=list)
    """{"evaluation", "data"}: their stored outputs hold a matching example's text."""
    erasure: int | None = None
    """The `erasures` row's id (None in a dry run)."""

    @property
    def removed(self) -> int:
        return sum(d.removed for d in self.datasets if d.status == "purged")

    @property
    def blocked(self) -> list[DatasetPurge]:
        return [d for d in self.datasets if d.status == "blocked"]

    def as_json(self, *, for_record: bool = False) -> dict[str, Any]:
        """The report; `for_record` gives the matches as hashes (what the record may keep)."""
        return {
            "erasure": self.erasure,
            "dry_run": self.dry_run,
            "matches": [m.as_record() if for_record else str(m) for m in self.matches],
            "reason": self.reason,
            "removed": self.removed,
            "datasets": [d.as_json() for d in self.datasets],
            "still_holding": self.still_holding,
            "runs": self.runs,
            "evaluations": self.evaluations,
            "residue": list(RESIDUE),
        }


@dataclass
class _Survey:
    """What one read of the record found."""

    heads: list[tuple[Dataset, DatasetVersion, list[Example], int]]
    """(dataset, newest version, the examples it keeps, how many it loses), per dataset searched."""
    holding: list[DatasetVersion]
    """Every version searched that holds a matching example."""
    clean: list[DatasetVersion]
    """Every version searched that holds none."""


def purge(
    workspace: Workspace,
    matches: Sequence[ExampleMatch],
    *,
    datasets: Sequence[str] = (),
    reason: str | None = None,
    dry_run: bool = False,
    refreeze_gold: bool = False,
    progress: Progress | None = None,
) -> PurgeReport:
    """Erase the examples matching any of `matches` from the newest version of every dataset (or
    of `datasets`); a dry run writes nothing and says what would go."""
    names = sorted(set(datasets))
    report = PurgeReport(list(matches), reason, dry_run)
    if dry_run:
        with workspace.record.session() as session:
            _fill(workspace, session, report, names, refreeze_gold, write=False, progress=progress)
        return report
    with workspace.record.session() as session:
        inputs = tuple(
            ArtifactRef("dataset_version", head.ref, head.content_hash)
            for dataset in _datasets(session, names)
            if (head := queries.head(session, dataset)) is not None
        )
    settings = {
        "matches": [m.as_record() for m in matches],
        "datasets": names,
        "refreeze_gold": refreeze_gold,
    }
    work = Work("purge", f"purge {len(inputs)} dataset(s)", inputs, settings)

    def attempt() -> dict[ArtifactRef, list[ArtifactRef]]:
        with workspace.record.session() as session:
            return _fill(workspace, session, report, names, refreeze_gold, write=True, progress=progress)

    def execute() -> Produced:
        # Each version is a compare-and-set on the head surveyed: when an import lands meanwhile,
        # the whole transaction (versions and erasure row) rolls back and the survey runs again.
        parents = retry_on_conflict(workspace, attempt, attempts=REBASE_ATTEMPTS)
        return Produced(list(parents), report.as_json(for_record=True), parents)

    # An erasure request is carried out and recorded every time, never answered from the cache.
    run_station(workspace, work, execute, force=True)
    return report


def _datasets(session: Session, names: Sequence[str]) -> list[Dataset]:
    return [queries.get_dataset(session, n) for n in names] if names else queries.datasets(session)


def _fill(
    workspace: Workspace,
    session: Session,
    report: PurgeReport,
    names: Sequence[str],
    refreeze_gold: bool,
    *,
    write: bool,
    progress: Progress | None,
) -> dict[ArtifactRef, list[ArtifactRef]]:
    """Survey, then (when `write`) write the purged versions and the erasure row, in `session`.
    Returns each written version with the version it came from (the lineage edges)."""
    survey = _survey(workspace, session, _datasets(session, names), report.matches, progress)
    report.datasets = []
    report.runs, report.evaluations = _affected(session, survey)
    erasure = None
    if write:
        erasure = queries.add_erasure(
            session,
            matches=[m.as_record() for m in report.matches],
            reason=report.reason,
            datasets=[],
            n_removed=0,
            still_holding=[],
            runs=[r["run"] for r in report.runs],
            evaluations=[e["evaluation"] for e in report.evaluations],
        )
        report.erasure = erasure.id
    parents: dict[ArtifactRef, list[ArtifactRef]] = {}
    for dataset, head, kept, removed in survey.heads:
        entry = DatasetPurge(dataset.name, "no match", head.ref, head.n_examples, removed)
        report.datasets.append(entry)
        if not removed:
            continue
        frozen = queries.frozen_gold_of(session, dataset)
        if frozen is not None and not refreeze_gold:
            entry.status = "blocked"
        elif erasure is None:
            entry.status = "would purge"
        else:
            written = _write(workspace, session, head, kept, frozen, erasure_id=erasure.id)
            entry.status, entry.written = "purged", written.ref
            source = ArtifactRef("dataset_version", head.ref, head.content_hash)
            parents[ArtifactRef("dataset_version", written.ref, written.content_hash)] = [source]
    report.still_holding = [v.ref for v in survey.holding]
    if erasure is not None:
        erasure.datasets = [d.as_json() for d in report.datasets]
        erasure.n_removed = report.removed
        erasure.still_holding = report.still_holding
    return parents


def _survey(
    workspace: Workspace,
    session: Session,
    datasets: Sequence[Dataset],
    matches: Sequence[ExampleMatch],
    progress: Progress | None,
) -> _Survey:
    """Read every version of `datasets` (each object once) and count its matching examples."""
    versions = [v for dataset in datasets for v in dataset.versions]
    counts: dict[str, int] = {}
    heads = []
    for done, version in enumerate(versions, start=1):
        head = version is version.dataset.versions[-1]
        if version.object_hash not in counts or head:
            examples = load_examples(workspace, version)
            matching = [matches_any(e, matches) for e in examples]
            counts[version.object_hash] = sum(matching)
            if head:
                kept = [e for e, hit in zip(examples, matching, strict=True) if not hit]
                heads.append((version.dataset, version, kept, counts[version.object_hash]))
        if progress is not None:
            progress(done, len(versions))
    holding = [v for v in versions if counts[v.object_hash]]
    return _Survey(heads, holding, [v for v in versions if not counts[v.object_hash]])


def _write(
    workspace: Workspace,
    session: Session,
    head: DatasetVersion,
    kept: list[Example],
    frozen: FrozenGold | None,
    *,
    erasure_id: int,
) -> DatasetVersion:
    """The next version of `head`'s dataset: `kept`. A frozen gold set's freeze moves to it."""
    if frozen is not None:
        queries.release_frozen_gold(session, frozen)
    commit = commit_version(
        workspace,
        session,
        head.dataset.name,
        kept,
        created_by="purge",
        provenance={"sources": head.provenance.get("sources", []), "erasure": erasure_id, "purged": head.ref},
        note=f"erasure {erasure_id}: {head.n_examples - len(kept)} matching examples removed",
        parent=head,
        expected=head.number,
    )
    version = commit.version
    if frozen is not None:
        freeze = FrozenGold(
            dataset_id=head.dataset_id, version_id=version.id, content_hash=version.content_hash
        )
        session.add(freeze)
        session.flush()
    return version


def _affected(session: Session, survey: _Survey) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The runs made from the versions holding matches: directly, or from anything the lineage
    says was made from them (not through a searched version without matches: a check that
    quarantined them, an earlier purge); and the evaluations whose stored outputs hold them."""
    refs = {v.id: v.ref for v in survey.holding}
    runs: dict[str, dict[str, str]] = {}
    for run in queries.runs_on_versions(session, refs):
        role = "trained on" if run.data_version_id in refs else "held out"
        ref = refs.get(run.data_version_id) or refs[run.eval_version_id or 0]
        runs[run.name] = {"run": run.name, "status": run.status, "via": f"{role} {ref}"}
    holding = queries.version_artifacts(session, refs.values())
    clean = queries.version_artifacts(session, (v.ref for v in survey.clean))
    for node in descendants(session, [a.id for a in holding], stop_at=[a.id for a in clean]):
        if node["kind"] in ("run", "model") and node["name"] not in runs:
            made = queries.run_named(session, node["name"])
            if made is not None:
                runs[made.name] = {"run": made.name, "status": made.status, "via": "made from them (lineage)"}
    evaluations = [
        {"evaluation": e.name, "data": refs[e.dataset_version_id]}
        for e in queries.evaluations_on_versions(session, refs)
    ]
    return sorted(runs.values(), key=lambda r: r["run"]), evaluations


def erasures(workspace: Workspace) -> list[dict[str, Any]]:
    """The erasures recorded in this project, oldest first (matches as hashes, as recorded)."""
    with workspace.record.session() as session:
        return [
            {
                "erasure": row.id,
                "at": row.created_at.isoformat(),
                "matches": row.matches,
                "reason": row.reason,
                "removed": row.n_removed,
                "datasets": row.datasets,
                "still_holding": row.still_holding,
                "runs": row.runs,
                "evaluations": row.evaluations,
            }
            for row in queries.erasures(session)
        ]
