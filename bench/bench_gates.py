"""Benchmark: the full gate suite, records per second and peak memory.

    python bench/bench_gates.py                        # CLINC150 train + oos_train (15,100 rows)
    python bench/bench_gates.py --synthetic 1000000    # synthetic support queries, 5% near duplicates
    python bench/bench_gates.py --engine ray           # the same gates on Ray Data (local instance)

Runs every gate of the default configuration (exact duplicates, conflicts, near duplicates,
contamination against a 1% held-out sample, PII, format against the label set, lengths in tokens
of the MiniLM tokenizer, balance) and prints records/s overall and per gate, and the peak RSS.
The near-duplicate gate's comparison with a plain datasketch MinHashLSH loop and its recall
against exact Jaccard are in bench/bench_near_duplicates.py.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_near_duplicates import synthetic_queries  # noqa: E402

from sftline.config import GatesConfig  # noqa: E402
from sftline.contract.spec import Contract, OutputFormat  # noqa: E402
from sftline.data.common_text import find_common_text  # noqa: E402
from sftline.data.example import Example, Provenance  # noqa: E402
from sftline.gates.engine import make_engine  # noqa: E402
from sftline.gates.lengths import HfTokenCounter  # noqa: E402
from sftline.gates.runner import build_gates, run_gates  # noqa: E402
from sftline.models import materialise_embedded  # noqa: E402

CLINC = Path(__file__).resolve().parents[1] / "examples" / "clinc150" / "data_full.json"


def clinc_examples() -> list[Example]:
    data = json.loads(CLINC.read_text())
    rows = data["train"] + data["oos_train"]
    return [
        Example(
            id=f"c{i}", provenance=Provenance("data_full.json", "0" * 64, "pairs", i + 1), text=t, label=label
        )
        for i, (t, label) in enumerate(rows)
    ]


def synthetic_examples(n: int) -> list[Example]:
    texts, _ = synthetic_queries(n)
    provenance = Provenance("synthetic", "0" * 64, "classification", None)
    # Twelve labels by word count: a small label set; repeated queries mostly keep their label.
    return [
        Example(id=f"s{i}", provenance=provenance, text=t, label=f"intent_{len(t.split()) % 12}")
        for i, t in enumerate(texts)
    ]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--synthetic", type=int, default=0, help="rows of synthetic data instead of CLINC150")
    parser.add_argument("--engine", default="local", choices=["local", "ray"])
    args = parser.parse_args()

    start = time.perf_counter()
    examples = synthetic_examples(args.synthetic) if args.synthetic else clinc_examples()
    held_out = examples[::100]
    load_seconds = time.perf_counter() - start
    labels = sorted({e.label for e in examples if e.label})
    contract = Contract(task="classify", output=OutputFormat(kind="labels", labels=labels))
    with tempfile.TemporaryDirectory() as cache:
        model = materialise_embedded("minilm-l6", Path(cache))
        counter = HfTokenCounter.from_folder(model.path, "minilm-l6")
    common = find_common_text({"data": examples, "heldout": held_out}, contract.system_prompt)
    gates = build_gates(
        GatesConfig(), contract, against={"heldout": held_out}, common=common, token_counter=counter
    )
    marks: list[tuple[str, float]] = []
    start = time.perf_counter()
    result = run_gates(
        examples,
        gates,
        engine=make_engine(args.engine),
        progress=lambda _d, _t, name: marks.append((name, time.perf_counter())),
    )
    seconds = time.perf_counter() - start
    rows = len(examples)
    source = "synthetic" if args.synthetic else "CLINC150"
    print(f"data: {source} {rows:,} rows (built in {load_seconds:.1f} s); engine {args.engine}")
    print(
        f"gate suite: {seconds:.1f} s, {rows / seconds:,.0f} records/s; accepted {len(result.accepted):,}, "
        f"quarantined {len(result.rejected):,}"
    )
    for (name, begin), (_, end) in zip(marks, marks[1:], strict=False):
        print(f"  {name:<17} {end - begin:7.2f} s")
    print(f"peak RSS: {peak_rss_gib():.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
