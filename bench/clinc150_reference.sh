#!/usr/bin/env bash
# CLINC150 "Full" reference numbers (Larson et al. 2019, table 2) for sftline's two default models.
#
#   bash bench/clinc150_reference.sh [PROJECT_DIR]        # CPU: about 2 hours on 2 cores
#   LM_EXAMPLES=15100 LM_EPOCHS=3 DTYPE=bfloat16 bash bench/clinc150_reference.sh   # a GPU
#
# Trains MiniLM-L6 as a 151-way classifier on train + oos_train (15,100 queries; oos is the 151st
# class), and SmolLM2-135M-Instruct with LoRA on a seeded sample of LM_EXAMPLES of them (all on a
# GPU), then evaluates both, and both base models zero-shot, on test + oos_test (5,500 queries).
# The probability threshold for the "threshold" row is chosen on val + oos_val by overall accuracy,
# as the paper chose its threshold on the validation split. Prints the JSON lines BENCHMARKS.md
# quotes: in_scope_accuracy and abstention_recall (out-of-scope recall), with 95% intervals.
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

printf 'warmup_ratio: 0.06\n' > minilm.yaml
CLS=$("$SFTLINE" train --config minilm.yaml --base minilm-l6 --data clinc-train --task classify --method full \
  --epochs 10 --batch-tokens 1024 --lr 4e-4 --eval-on clinc-val --eval-every 300 --save-every 300 --seed 7 \
  --dtype "$DTYPE" --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["run"])')
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
        pick = {k: m[k] for k in ("in_scope_accuracy", "abstention_recall", "accuracy", "macro_f1", "ece") if k in m}
        print(json.dumps({"model": model, "dataset": s["dataset"], "settings": s["settings"].get("abstain_below"), **pick}))
'
}

quote "$CLS" --on clinc-test
best=$("$PYTHON" - "$SFTLINE" "$CLS" <<'PY'
import json, subprocess, sys
sftline, run = sys.argv[1:]
scores = {}
for t in [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]:
    out = subprocess.run([sftline, "eval", run, "--on", "clinc-val", "--no-base", "--abstain-below", str(t), "--json"],
                         check=True, capture_output=True, text=True).stdout
    scores[t] = json.loads(out)["sections"][0]["metrics"]["overall"]["accuracy"]["value"]
print(max(scores, key=lambda t: (scores[t], -t)))
PY
)
echo "threshold chosen on val: $best"
quote "$CLS" --on clinc-test --no-base --abstain-below "$best"
quote "$LM" --on clinc-test --max-new-tokens 16
"$SFTLINE" eval "$CLS" --on clinc-test --html "$PROJECT/eval-minilm.html" > /dev/null
"$SFTLINE" eval "$LM" --on clinc-test --max-new-tokens 16 --html "$PROJECT/eval-smollm2.html" > /dev/null
