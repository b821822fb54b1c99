"""The label-noise gate on CLINC150 train with a share of its labels flipped (issue 14).

CLINC150 "Full" train: 15,000 in-scope queries, 150 intents x 100. A seeded 2% of them get
another intent, drawn uniformly; the gate (at its defaults: the embedded MiniLM, 5 folds of
logistic regression, cleanlab's own cut-off) runs over all 15,000, and its flags are scored
against the flipped set: recall, precision, the number flagged, how often the suggested label
is the original one, rows/s (embedding, then the folds and cleanlab) and peak RSS.

    .venv/bin/python bench/bench_label_noise.py [--flip 0.02] [--seed 0] [--folds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sftline.contract.spec import Contract
from sftline.data.example import Example, Provenance
from sftline.evals.predict import EmbeddingPredictor
from sftline.gates.label_noise import LabelNoiseGate
from sftline.models import materialise_embedded

DATA = Path(__file__).resolve().parents[1] / "examples" / "clinc150" / "data_full.json"


def flipped_train(share: float, seed: int) -> tuple[list[Example], dict[str, str]]:
    """CLINC150 train with `share` of its labels replaced by another intent: the examples and,
    for each flipped one, its original label."""
    rows = json.loads(DATA.read_text())["train"]
    intents = sorted({intent for _, intent in rows})
    rng = np.random.default_rng(seed)
    flipped = set(rng.choice(len(rows), size=round(share * len(rows)), replace=False).tolist())
    examples, original = [], {}
    for i, (text, intent) in enumerate(rows):
        label = intent
        if i in flipped:
            others = [x for x in intents if x != intent]
            label = others[int(rng.integers(len(others)))]
            original[f"clinc-{i}"] = intent
        place = Provenance("data_full.json", "0" * 64, "classification", pointer=f"train[{i}]")
        examples.append(Example(f"clinc-{i}", place, text=text, label=label))
    return examples, original


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flip", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    examples, original = flipped_train(args.flip, args.seed)
    with tempfile.TemporaryDirectory() as cache:
        encoder = EmbeddingPredictor(materialise_embedded("minilm-l6", Path(cache)).path, labels=())
    timings: dict[str, float] = {}

    def encode(texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        vectors = encoder.embed(texts)[0]
        timings["embed_s"] = time.perf_counter() - started
        return vectors

    gate = LabelNoiseGate(encode, Contract(task="classify", output={"kind": "labels"}), folds=args.folds)
    started = time.perf_counter()
    outcome = gate.check(examples)
    total = time.perf_counter() - started
    flagged = {f.example_id: f for f in outcome.flags}
    hits = [i for i in flagged if i in original]
    suggested_right = sum(flagged[i].suggested_label == original[i] for i in hits)
    result = {
        "rows": len(examples),
        "flipped": len(original),
        "flagged": len(flagged),
        "true_flags": len(hits),
        "recall": round(len(hits) / len(original), 4),
        "precision": round(len(hits) / max(len(flagged), 1), 4),
        "suggested_is_original": round(suggested_right / max(len(hits), 1), 4),
        "out_of_fold_accuracy": outcome.report["out_of_fold_accuracy"],
        "seconds": round(total, 1),
        "embed_s": round(timings["embed_s"], 1),
        "folds_and_cleanlab_s": round(total - timings["embed_s"], 1),
        "rows_per_s": round(len(examples) / total, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "settings": {"flip": args.flip, "seed": args.seed, "folds": args.folds},
    }
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
