#!/usr/bin/env bash
# CLINC150 "Full" reference numbers (Larson et al. 2019, table 2) for sftline's two default models.
#
#   bash bench/clinc150_reference.sh [PROJECT_DIR]        # CPU: about 2 hours on 2 cores
#   LM_EXAMPLES=15100 LM_EPOCHS=3 DTYPE=bfloat16 bash bench/clinc150_reference.sh   # a GPU
#
# Trains MiniLM-L6 as a 151-way classifier on train + oos_train (15,100 queries; oos is the 151st
# class), and SmolLM2-135M-Instruct with LoRA on a seeded sample of LM_EXAMPLES of them (all on a
# GPU), then evaluates both, and both base models zero-shot, on test + oos_test (5,500 queries).
# The classifier abstains by the rule its run chose on its own holdout (never on val or test);
# SmolLM2 is evaluated with its answers constrained to the labels and without. Prints the JSON
# lines BENCHMARKS.md quotes: in_scope_accuracy and abstention_recall (out-of-scope recall), ECE
# and macro-F1, with 95% intervals.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SFTLINE=${SFTLINE:-$ROOT/.venv/bin/sftline}
PYTHON=$(dirname "$SFTLINE")/python
PROJECT=${1:-/tmp/clinc150-reference}
CLINC=$ROOT/examples/clinc150
LM_EXAMPLES=${LM_EXAMPLES:-2400}
LM_EPOCHS=${LM_EPOCHS:-1}
DTYPE=${DTYPE:-float32}
export HF_HUB_OFFLINE=1

rm -rf "$PROJECT"
"$SFTLINE" init "$PROJECT" --task classify --abstention oos --base-model minilm-l6 --name clinc150-reference \
  --system-prompt "Name the intent of the user's request with one label, or oos if it is out of scope."
cd "$PROJECT"
"$SFTLINE" models pull minilm-l6
"$SFTLINE" models pull smollm2-135m-instruct
for split in train val test; do
  "$SFTLINE" data import "$CLINC/data_full.json" --name "clinc-$split" --split "$split" --split "oos_$split" \
    --label-groups "domain=$CLINC/domains.json"
done
"$SFTLINE" data mix --from clinc-train --weights "*:1" --total "$LM_EXAMPLES" --seed 7 --name clinc-lm

# MiniLM-L6 with the classifier recipe's defaults (no tuning flags): it holds out a stratified 10%
# of clinc-train for its best checkpoint, temperature and out-of-scope threshold.
CLS=$("$SFTLINE" train --base minilm-l6 --data clinc-train --task classify --dtype "$DTYPE" --json \
  | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["run"])')
LM=$("$SFTLINE" train --base smollm2-135m-instruct --data clinc-lm --task chat --method lora \
  --epochs "$LM_EPOCHS" --batch-tokens 1024 --lr 4e-4 --seed 7 --dtype "$DTYPE" --json \
  | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["run"])')

quote() {  # model, then eval options: one JSON line of the numbers BENCHMARKS.md quotes
  "$SFTLINE" eval "$@" --json | "$PYTHON" -c '
import json, sys
report = json.load(sys.stdin)
for s in report["sections"]:
    rows = [(s["model"], s["metrics"]["overall"])]
    for key in ("base", "baseline"):
        if key in s:
            rows.append((s[key]["model"] + " (zero-shot)", s[key]["metrics"]["overall"]))
    for model, m in rows:
        keys = ("in_scope_accuracy", "abstention_recall", "accuracy", "macro_f1", "ece", "label_compliance")
        pick = {k: m[k] for k in keys if k in m}
        print(json.dumps({"model": model, "dataset": s["dataset"], **pick}))
'
}

quote "$CLS" --on clinc-test                            # abstains by the rule its run stored
quote "$CLS" --on clinc-test --no-base --no-stored-abstention   # oos as a class only
quote "$LM" --on clinc-test --max-new-tokens 16         # answers constrained to the labels (default)
quote "$LM" --on clinc-test --max-new-tokens 16 --no-base --no-constrain
"$SFTLINE" eval "$CLS" --on clinc-test --html "$PROJECT/eval-minilm.html" > /dev/null
"$SFTLINE" eval "$LM" --on clinc-test --max-new-tokens 16 --html "$PROJECT/eval-smollm2.html" > /dev/null
