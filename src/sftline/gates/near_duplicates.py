"""The near-duplicate gate: of each group of near duplicates, every member but its
representative is flagged, and only when its exact Jaccard with that representative is at
least the threshold (no chains through a third text).

The pair search runs on the engine (`Engine.similar_pairs`: in process, or on Ray's workers,
with the same pairs), the grouping in the driver (`sftline.text.groups`). Texts are compared
less the shared text (`sftline.data.common_text`): a system message every record carries would
otherwise make short, different queries look alike.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Literal

from sftline.data.common_text import CommonText
from sftline.data.example import Example
from sftline.errors import ConfigError
from sftline.gates.base import Flag, GateOutcome
from sftline.gates.engine import Engine, ExampleTexts, LocalEngine
from sftline.text.groups import near_duplicate_groups
from sftline.text.minhash import ShingleSpec, check_settings
from sftline.text.normalize import normalize_text


class NearDuplicateGate:
    """Flags the members of near-duplicate groups except each group's representative, the
    earliest member that no other gate blocks (else the earliest)."""

    name = "near_duplicates"
    stage: Literal["duplicates"] = "duplicates"

    def __init__(
        self,
        *,
        threshold: float = 0.8,
        num_perm: int = 128,
        field: Literal["prompt", "example"] = "prompt",
        seed: int = 1,
        common: CommonText | None = None,
    ) -> None:
        check_settings(threshold, num_perm, ShingleSpec())
        if field not in ("prompt", "example"):
            raise ConfigError(f"near-duplicate field must be 'prompt' or 'example', got {field!r}")
        self.threshold, self.num_perm, self.field, self.seed = threshold, num_perm, field, seed
        self.common = common or CommonText()

    def _text(self, example: Example) -> str:
        compared = self.common.compared_input(example)
        return compared if self.field == "prompt" else f"{compared}\n{normalize_text(example.target)}"

    def check(
        self,
        examples: Sequence[Example],
        *,
        blocked: Collection[str] = (),
        engine: Engine | None = None,
        source: Path | None = None,
    ) -> GateOutcome:
        """`engine` searches the pairs (in process by default); `source` is a Parquet file of
        these examples that an engine with workers may read there."""
        texts = ExampleTexts(examples, self._text, source)
        found = (engine or LocalEngine()).similar_pairs(
            texts, threshold=self.threshold, num_perm=self.num_perm, seed=self.seed, shingle=ShingleSpec()
        )
        groups = near_duplicate_groups(found, texts, avoid=[e.id in blocked for e in examples])
        flagged: list[tuple[int, Flag]] = []
        clusters = []
        for group in groups:
            rep_id = examples[group.representative].id
            size = len(group.members) + 1
            for member, jaccard in group.members:
                example = examples[member]
                field = self.common.input_field(example) if self.field == "prompt" else None
                detail = f"Jaccard {jaccard:.2f} with {rep_id} (group of {size})"
                flagged.append((member, Flag(example.id, "near_duplicate", detail, (rep_id,), field)))
            members = [rep_id] + [examples[m].id for m, _ in group.members]
            clusters.append({"representative": rep_id, "members": members, "size": size})
        flags = [flag for _, flag in sorted(flagged, key=lambda pair: pair[0])]
        report = {
            "clusters": clusters,
            "n_clusters": len(clusters),
            "n_flagged": len(flags),
            "params": {
                **found.params,
                "field": self.field,
                "verified": "exact Jaccard with the representative",
            },
        }
        return GateOutcome(self.name, flags, report=report)
