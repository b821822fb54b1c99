"""Benchmark: the classifier recipe on CLINC150, and one ablation row per choice.

    python bench/bench_classifier.py                       # the default recipe on CLINC150 Full
    python bench/bench_classifier.py --per-intent 30 --ablations   # rows on a seeded subset
    python bench/bench_classifier.py --only default,lr-2e-5 --per-intent 30

Every row is `sftline train --base minilm-l6 --data clinc-train --task classify` with the
recipe's defaults (no tuning flags) plus the one flag the row names, then `sftline eval` on the
CLINC150 test split (4,500 in-scope queries, 1,000 out of scope) with what the run stored: its
temperature and its abstention rule, both chosen on its own holdout (a seeded, stratified 10% of
the training data it was given; the test split is never looked at). The subset (`--per-intent
K`) keeps the first K training queries of each intent and the same share of the out-of-scope
training queries; the test split is always whole.

Prints one line per row: in-scope accuracy and out-of-scope recall with their 95% bootstrap
intervals, ECE, macro-F1, training minutes, peak RSS of the training process, and the run's
holdout report of each abstention score (AUROC, and the in-scope accuracy and out-of-scope recall
each would give on the holdout), then a markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLINC = ROOT / "examples" / "clinc150"
SFTLINE = str(Path(sys.executable).parent / "sftline")

ROWS: dict[str, tuple[list[str], str]] = {
    "default": ([], "the recipe as it is"),
    "cls-pooling": (["--pooling", "cls"], "[CLS] token instead of the mean"),
    "lr-2e-5": (["--lr", "2e-5"], "lr 2e-5 (the full fine-tuning default for chat)"),
    "lr-2e-4": (["--lr", "2e-4"], "lr 2e-4"),
    "lr-4e-4": (["--lr", "4e-4"], "lr 4e-4"),
    "epochs-3": (["--epochs", "3"], "3 epochs instead of the data-scaled count"),
    "epochs-8": (["--epochs", "8"], "8 epochs instead of the data-scaled count"),
    "no-warmup": (["--warmup-ratio", "0"], "no warmup"),
    "no-weight-decay": (["--weight-decay", "0"], "no weight decay"),
    "label-smoothing": (["--label-smoothing", "0.1"], "label smoothing 0.1"),
    "batch-96": (["--batch-size", "96"], "96 examples a step (about the old 1,024-token batches)"),
    "lora": (["--method", "lora"], "LoRA r16 instead of full fine-tuning (the old default)"),
}


PEAK = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print(f'peak_kib={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr); "
    "sys.exit(code)"
)
"""Runs its arguments as its only child and prints that child's peak RSS."""


def run(args: list[str], cwd: Path, *, peak: bool = False) -> tuple[str, int | None]:
    """stdout of `args`, and with `peak` its peak RSS in MiB."""
    command = [sys.executable, "-c", PEAK, *args] if peak else args
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    found = [line for line in result.stderr.splitlines() if line.startswith("peak_kib=")]
    return result.stdout, (int(found[-1].split("=")[1]) // 1024 if found else None)


def subset(per_intent: int | None) -> Path:
    """CLINC150 with at most `per_intent` training queries per intent (the first ones), the same
    share of the out-of-scope training queries, and the other splits whole."""
    data = json.loads((CLINC / "data_full.json").read_text())
    if per_intent is not None:
        kept: dict[str, int] = {}
        train = []
        for text, label in data["train"]:
            if kept.get(label, 0) < per_intent:
                kept[label] = kept.get(label, 0) + 1
                train.append([text, label])
        share = len(train) / len(data["train"])
        data["train"] = train
        data["oos_train"] = data["oos_train"][: max(10, round(share * len(data["oos_train"])))]
    path = Path(tempfile.mkdtemp(prefix="clinc-subset-")) / "data_full.json"
    path.write_text(json.dumps(data))
    return path


def setup(project: Path, source: Path) -> None:
    run(
        [
            SFTLINE,
            "init",
            str(project),
            "--task",
            "classify",
            "--abstention",
            "oos",
            "--base-model",
            "minilm-l6",
            "--name",
            "clinc150-recipe",
        ],
        ROOT,
    )
    run([SFTLINE, "models", "pull", "minilm-l6"], project)
    for split in ("train", "val", "test"):
        run(
            [
                SFTLINE,
                "data",
                "import",
                str(source),
                "--name",
                f"clinc-{split}",
                "--split",
                split,
                "--split",
                f"oos_{split}",
            ],
            project,
        )


def measure(project: Path, name: str, flags: list[str]) -> dict[str, object]:
    args = [SFTLINE, "train", "--base", "minilm-l6", "--data", "clinc-train", "--task", "classify", *flags]
    started = time.perf_counter()
    out, peak = run([*args, "--force", "--json"], project, peak=True)
    summary = json.loads(out)
    minutes = (time.perf_counter() - started) / 60
    evaluated, _ = run(
        [SFTLINE, "eval", summary["run"], "--on", "clinc-val", "--on", "clinc-test", "--no-base", "--json"],
        project,
    )
    sections = {
        s["dataset"].split("@")[0]: s["metrics"]["overall"] for s in json.loads(evaluated)["sections"]
    }
    overall, val = sections["clinc-test"], sections["clinc-val"]
    described = json.loads((Path(summary["output"]) / "classifier.json").read_text())
    abstention = described.get("abstention", {})
    return {
        "row": name,
        "flags": " ".join(flags),
        "run": summary["run"],
        "steps": summary["steps"],
        "minutes": round(minutes, 1),
        "peak_rss_mb": peak,
        "in_scope_accuracy": overall["in_scope_accuracy"],
        "abstention_recall": overall["abstention_recall"],
        "ece": overall["ece"],
        "macro_f1": overall["macro_f1"],
        "val": {k: round(val[k]["value"], 4) for k in ("in_scope_accuracy", "abstention_recall", "ece")},
        "rule": abstention.get("rule"),
        "holdout": abstention.get("holdout"),
        "temperature": described.get("temperature"),
        "warnings": summary.get("warnings"),
    }


def pct(estimate: dict[str, float]) -> str:
    return f"{100 * estimate['value']:.1f} ({100 * estimate['low']:.1f}-{100 * estimate['high']:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--per-intent", type=int, default=None, help="training queries per intent (default all)"
    )
    parser.add_argument("--ablations", action="store_true", help="every row, not only the default")
    parser.add_argument("--only", default=None, help="comma-separated row names")
    parser.add_argument("--project", type=Path, default=None)
    args = parser.parse_args()
    names = args.only.split(",") if args.only else (list(ROWS) if args.ablations else ["default"])
    project = args.project or Path(tempfile.mkdtemp(prefix="clinc-recipe-")) / "project"
    setup(project, subset(args.per_intent))
    print(
        f"# CLINC150, {'all' if args.per_intent is None else args.per_intent} training queries per intent; "
        f"torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}",
        flush=True,
    )
    results = []
    for name in names:
        flags, _ = ROWS[name]
        result = measure(project, name, flags)
        results.append(result)
        print(json.dumps(result), flush=True)
    print(
        "\n| row | val in-scope / OOS recall | in-scope accuracy | out-of-scope recall | ECE | macro-F1 "
        "| steps | minutes | peak RSS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {ROWS[str(r['row'])][1]} | {100 * r['val']['in_scope_accuracy']:.1f} / "
            f"{100 * r['val']['abstention_recall']:.1f} | {pct(r['in_scope_accuracy'])} | "
            f"{pct(r['abstention_recall'])} | "
            f"{100 * r['ece']['value']:.1f} | {100 * r['macro_f1']['value']:.1f} | {r['steps']} | "
            f"{r['minutes']} | {r['peak_rss_mb']} MB |"
        )


if __name__ == "__main__":
    main()
