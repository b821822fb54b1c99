"""Benchmark: the three abstention scores of one trained classifier, on its holdout and on test.

    python bench/bench_abstention_scores.py PROJECT RUN --train clinc-train --test clinc-test

For the classifier a run exported (sftline.models.classifier), re-derives the run's own holdout
(the seeded, stratified share it carved from its training data, or its `eval_on`), then for
each score (msp, energy, mahalanobis; sftline.evals.abstention) sets the threshold the run's
rule would (at most `false_abstention` of the holdout's in-scope examples turned away) and
applies it to the test set. Prints, per score: AUROC on the holdout and on test, and on test the
in-scope accuracy and out-of-scope recall under that score's rule, so the scores can be compared
where the run could only compare them on its small holdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sftline.data.splits import carve_holdout
from sftline.evals.abstention import SCORES, auroc, choose_rule, fit_feature_stats, score
from sftline.evals.predict import ClassifierPredictor
from sftline.record import queries
from sftline.record.workspace import Workspace
from sftline.stations.versions import load_examples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("project", type=Path)
    parser.add_argument("run")
    parser.add_argument("--train", default="clinc-train")
    parser.add_argument("--test", default="clinc-test")
    args = parser.parse_args()
    with Workspace.find(args.project) as workspace, workspace.record.session() as session:
        run = queries.get_run(session, args.run)
        config, folder = run.config, Path(run.output_dir) / "model"
        train = load_examples(workspace, queries.resolve(session, args.train))
        test = load_examples(workspace, queries.resolve(session, args.test))
        holdout_ref = config.get("eval_on")
        held = load_examples(workspace, queries.resolve(session, holdout_ref)) if holdout_ref else None
    if held is None:
        train, held = carve_holdout(train, config["holdout_share"], config["seed"])
    predictor = ClassifierPredictor.load(folder, stored_abstention=False)
    labels = predictor.labels
    abstention = json.loads((folder / "classifier.json").read_text())["abstention"]["rule"]["label"]
    index = {label: i for i, label in enumerate(labels)}
    oos = index[abstention]
    in_scope = [i for i in range(len(labels)) if i != oos]

    def outputs(examples: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits, features, _, _ = predictor.outputs([e.prompt for e in examples])
        return logits, features, np.array([index[str(e.label)] for e in examples])

    train_logits, train_features, train_y = outputs(train)
    held_logits, held_features, held_y = outputs(held)
    test_logits, test_features, test_y = outputs(test)
    del train_logits
    stats = fit_feature_stats(train_features, train_y, in_scope)
    print(f"# {args.run}: holdout {len(held)} ({int((held_y == oos).sum())} out of scope), test {len(test)}")
    print("| score | holdout AUROC | test AUROC | test in-scope accuracy | test out-of-scope recall |")
    print("|---|---:|---:|---:|---:|")
    for name in SCORES:
        rule, report = choose_rule(
            held_logits,
            held_features,
            held_y,
            labels,
            abstention,
            temperature=predictor.temperature,
            stats=stats,
            false_abstention=config["false_abstention"],
            choice=name,
        )
        s = score(
            name,
            test_logits,
            test_features,
            temperature=predictor.temperature,
            in_scope=in_scope,
            stats=stats,
        )
        top = test_logits.argmax(axis=1)
        abstained = (top == oos) | rule.abstain(s)
        out = test_y == oos
        in_scope_accuracy = float(((~abstained) & (top == test_y))[~out].mean())
        recall = float(abstained[out].mean())
        held_auroc = report["scores"][name]["auroc"]
        shown = "-" if held_auroc is None else f"{held_auroc:.4f}"
        print(
            f"| {name} | {shown} | {auroc(s[~out], s[out]):.4f} | "
            f"{100 * in_scope_accuracy:.1f} | {100 * recall:.1f} |"
        )
    top = test_logits.argmax(axis=1)
    out = test_y == oos
    print(
        f"| none (the top label; oos as a class) | - | - | {100 * float((top == test_y)[~out].mean()):.1f} | "
        f"{100 * float((top == oos)[out].mean()):.1f} |"
    )


if __name__ == "__main__":
    main()
