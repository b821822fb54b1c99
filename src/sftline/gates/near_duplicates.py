"""The near-duplicate gate: every member of a MinHash cluster but its earliest is flagged.

The signatures, LSH banding and clustering live in `sftline.text.minhash`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from sftline.data.example import Example
from sftline.errors import ConfigError
from sftline.gates.base import Flag, GateOutcome
from sftline.text.minhash import NearDuplicateIndex, ShingleSpec, check_settings, equal_counts


class NearDuplicateGate:
    """Flags every member of a near-duplicate cluster except its earliest example."""

    name = "near_duplicates"

    def __init__(
        self,
        *,
        threshold: float = 0.8,
        num_perm: int = 128,
        field: Literal["prompt", "example"] = "prompt",
        seed: int = 1,
    ) -> None:
        check_settings(threshold, num_perm, ShingleSpec())
        if field not in ("prompt", "example"):
            raise ConfigError(f"near-duplicate field must be 'prompt' or 'example', got {field!r}")
        self.threshold, self.num_perm, self.field, self.seed = threshold, num_perm, field, seed

    def _text(self, example: Example) -> str:
        return example.prompt if self.field == "prompt" else f"{example.prompt}\n{example.target}"

    def check(self, examples: Sequence[Example]) -> GateOutcome:
        index = NearDuplicateIndex.build(
            [self._text(e) for e in examples],
            num_perm=self.num_perm,
            threshold=self.threshold,
            seed=self.seed,
        )
        flagged: list[tuple[int, Flag]] = []
        clusters = []
        for group in index.clusters():
            rep, others = group[0], np.array(group[1:])
            rep_id = examples[rep].id
            sig = index.signatures
            scores = equal_counts(sig, sig, np.full_like(others, rep), others) / index.num_perm
            for member, score in zip(others.tolist(), scores.tolist(), strict=True):
                detail = f"Jaccard ~{score:.2f} with {rep_id} (cluster of {len(group)})"
                flag = Flag(examples[member].id, "near_duplicate", detail, (rep_id,))
                flagged.append((member, flag))
            members = [examples[m].id for m in group]
            clusters.append({"representative": rep_id, "members": members, "size": len(group)})
        flags = [flag for _, flag in sorted(flagged, key=lambda pair: pair[0])]
        report = {
            "clusters": clusters,
            "n_clusters": len(clusters),
            "n_flagged": len(flags),
            "params": {**index.params, "field": self.field},
        }
        return GateOutcome(self.name, flags, report=report)
