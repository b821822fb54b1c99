#!/usr/bin/env bash
# The demo: runs the line, as far as it is built, on the embedded defaults and CLINC150.
# Usage: scripts/demo.sh SFTLINE_BIN PROJECT_DIR
set -euo pipefail
SFTLINE=$(realpath "$1")
PROJECT=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLINC="$ROOT/examples/clinc150"
# The demo's sizes (README, "Full-size run"): passes of the classifier's training (empty: the
# recipe's default), SmolLM2 LoRA steps and the generations its evaluation samples.
DEMO_CLS_EPOCHS=${DEMO_CLS_EPOCHS-2}
PYTHON="$(dirname "$SFTLINE")/python"

# Each header says how long the demo has run (bash's SECONDS).
step() { printf '\n\033[1m== %s\033[0m  [%dm%02ds]\n' "$*" $((SECONDS / 60)) $((SECONDS % 60)); }

rm -rf "$PROJECT"
step "sftline init $PROJECT (task classify, abstention label oos, base model MiniLM-L6)"
"$SFTLINE" init "$PROJECT" --task classify --abstention oos --base-model minilm-l6 --name clinc150-demo \
  --system-prompt "Name the intent of the user's request with one label, or oos if it is out of scope."
cd "$PROJECT"

step "the line in sftline.yaml: import, check, split, mix, train, eval (see line: below)"
sed -i 's/critical_slices: \[\]/critical_slices: [domain=banking]/' sftline.yaml
# The release suite of `models promote`: the test split and the banking holdout (the line's eval).
sed -i 's/^  on: \[\]$/  on: [clinc150-test, clinc150-domain-banking]/' sftline.yaml
# The line replaces the template's `line: null`; each station's settings are its command's options.
sed -i '/^line: null$/d' sftline.yaml
cat >> sftline.yaml <<YAML
line:
  import:
    # CLINC150 train (+ the 100 out-of-scope training queries) and test, tagged with their domain
    - {path: $CLINC/data_full.json, name: clinc150, split: [train, oos_train], label_groups: ["domain=$CLINC/domains.json"]}
    - {path: $CLINC/data_full.json, name: clinc150-test, split: [test, oos_test], label_groups: ["domain=$CLINC/domains.json"]}
  # quality gates on the training data, with contamination checked against the test split
  check: {dataset: clinc150, against: [clinc150-test]}
  # a group-safe split: a frozen gold set (10%) and a targeted holdout for the banking domain
  split: {dataset: clinc150, gold: 0.1, targeted: [domain=banking], seed: 7, freeze_gold: true}
  # a training mixture with requested domain weights
  mix: {from: [clinc150-train], weights: "domain=banking:0.15,*:0.85", total: 5000, seed: 7, name: clinc150-mix}
  # MiniLM-L6 as a 151-way intent classifier with the task's default recipe (full fine-tuning,
  # mean pooling, 32 examples a step, lr 2e-4) except for the demo's size: DEMO_CLS_EPOCHS passes
  # (2 unless set; set it empty for the recipe's own count, 10 here). The gold set is its holdout:
  # the best checkpoint, the temperature and the out-of-scope threshold are chosen there
  train: {base: minilm-l6, data: clinc150-mix, task: classify, eval_on: clinc150-gold, seed: 7${DEMO_CLS_EPOCHS:+, epochs: $DEMO_CLS_EPOCHS}}
  # the classifier on the test split and the banking holdout, against zero-shot MiniLM: may it ship?
  # (and on the gold set: how it answers data like its training data, monitoring's reference)
  eval: {on: [clinc150-test, clinc150-domain-banking, clinc150-gold], baseline: minilm-l6}
YAML
sed -n '/^release:/,/^$/p' sftline.yaml
sed -n '/^line:/,$p' sftline.yaml
"$SFTLINE" config check

step "sftline run: every station runs the first time (exit status: the release verdict)"
verdict=0
"$SFTLINE" run || verdict=$?
echo "sftline run exited $verdict (0 pass, 3 fail, 4 inconclusive)"
# The classifier against zero-shot MiniLM on the test split (the stored outputs, so nothing runs again).
"$SFTLINE" eval run-0001 --on clinc150-test --baseline minilm-l6 --json | "$PYTHON" -c '
import json, sys
s = json.load(sys.stdin)["sections"][0]
for name, m in ((s["model"], s["metrics"]["overall"]), ("zero-shot " + s["baseline"]["model"], s["baseline"]["metrics"]["overall"])):
    print("{:<20} in-scope accuracy {:5.1%}  out-of-scope recall {:5.1%}  ECE {:5.1%}".format(
        name, m["in_scope_accuracy"]["value"], m["abstention_recall"]["value"], m["ece"]["value"]))' || true

step "sftline run again: nothing changed, so every station is cached"
started=$SECONDS
"$SFTLINE" run || true
printf 'the cached line took %ds\n' $((SECONDS - started))

step "what the line made: base models pulled on first use, datasets, versions, quarantined examples"
"$SFTLINE" models list
"$SFTLINE" data list
"$SFTLINE" data versions clinc150
"$SFTLINE" data rejects clinc150@v1 --limit 8
"$SFTLINE" data show clinc150-mix --head 1

step "the registry: the classifier registered, promoted to production on its release verdict (the line's, reused)"
"$SFTLINE" models register run-0001
"$SFTLINE" models promote clinc150-demo@1 --to production --reason "first release" || true
"$SFTLINE" models history clinc150-demo
"$SFTLINE" models card clinc150-demo@1

step "lineage of the registered model: from the CLINC150 file through versions, checks, the split and the run to its evaluations"
"$SFTLINE" lineage clinc150-demo@1

step "the same commands by hand reuse the line's work: HTML reports from cached stations"
station() { "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); print(d["station"], d["key"][:12], "->", sys.argv[1])' "$1"; }
"$SFTLINE" data check clinc150@v1 --against clinc150-test@v1 --html gates.html --json | station gates.html
"$SFTLINE" eval run-0001 --on clinc150-test --on clinc150-domain-banking --baseline minilm-l6 \
  --html release.html --json | station release.html || true

step "by hand beside the line: SmolLM2-135M-Instruct, LoRA, answering with the intent label in its own chat template"
"$SFTLINE" train --base smollm2-135m-instruct --data clinc150-mix --task chat --show-masks 2
"$SFTLINE" train --base smollm2-135m-instruct --data clinc150-mix --task chat --method lora \
  --max-steps ${DEMO_LM_STEPS:-20} --batch-tokens 512 --grad-accum 2 --lr 3e-4 --seed 7

step "runs"
"$SFTLINE" runs list

step "evaluation of the SmolLM2 LoRA run on a ${DEMO_LM_EVAL:-100}-example sample of the test split: answers constrained to the contract's labels (the default), then free"
"$SFTLINE" eval run-0002 --on clinc150-test --sample ${DEMO_LM_EVAL:-100} --max-new-tokens 12 --no-base \
  --html eval-smollm2.html
"$SFTLINE" eval run-0002 --on clinc150-test --sample ${DEMO_LM_EVAL:-100} --max-new-tokens 12 --no-base \
  --no-constrain --json | "$PYTHON" -c '
import json, sys
m = json.load(sys.stdin)["sections"][0]["metrics"]["overall"]
print("without the constraint: label compliance {:.1%}, accuracy {:.1%}".format(
    m["label_compliance"]["value"], m["accuracy"]["value"]))'
"$SFTLINE" evals list

step "serving: the production version behind an OpenAI-compatible API (a few requests, then its metrics)"
KEY=$("$SFTLINE" keys add demo --scope serve --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["key"])')
PORT=${DEMO_PORT:-8765}
# Every request's text goes to the prediction log here (the default keeps a 10% sample), so the
# monitoring steps below see all of the demo's traffic.
printf 'log: {sample: 1.0, flush_s: 1}\n' > deployments.yaml
"$SFTLINE" serve --port "$PORT" --deployments deployments.yaml > serve.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
"$PYTHON" -c '
import sys, time, urllib.request
for _ in range(240):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz"); break
    except OSError:
        time.sleep(0.5)' "$PORT"
"$PYTHON" - "$PORT" "$KEY" <<'PY'
import sys, urllib.request
from openai import OpenAI
port, key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key)
for text in ["how much money is in my checking account", "what's the weather like in paris", "please tell me a story about dragons"]:
    raw = client.chat.completions.with_raw_response.create(model="clinc150-demo", messages=[{"role": "user", "content": text}])
    reply = raw.parse()
    print(f"{text!r} -> {reply.choices[0].message.content}  (x-model-version {raw.headers['x-model-version']})")
request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {key}"})
lines = urllib.request.urlopen(request).read().decode().splitlines()
print("metrics it moved:")
for line in lines:
    if line.startswith(("sftline_requests_total{", "sftline_request_latency_seconds_count", "sftline_abstentions_total", "sftline_batch_size_count")):
        print("  " + line)
PY

step "monitoring, calm: 150 in-scope queries like the training data, then sftline monitor"
# Monitoring compares traffic with clinc150-train's inputs (the model trained on a reweighted mix
# of it) and with the model's answers on the gold set, held out of that same data: see
# monitoring: in sftline.yaml. (CLINC150's test split is 18% out of scope, its training data 0.7%:
# traffic like the test split is a real shift from the training data, and monitoring says so.)
sed -i -e 's/^  window: 24h$/  window: 1h/' \
  -e 's/reference: null, reference_on: \[\]/reference: clinc150-train, reference_on: [clinc150-gold]/' \
  -e 's/price_per_hour: 0.0,/price_per_hour: 0.5,/' sftline.yaml
sed -n '/^monitoring:/,/^  webhook_url/p' sftline.yaml
traffic() {  # traffic.py BATCH: sends the batch, appends request id -> intent to answers.jsonl
  "$PYTHON" - "$PORT" "$KEY" "$CLINC/data_full.json" "$1" <<'PY'
import json, random, sys
from openai import OpenAI
port, key, path, batch = sys.argv[1:5]
data = json.load(open(path))
rng = random.Random(3)
in_scope, oos = rng.sample(data["val"], 600), list(data["oos_val"])
rng.shuffle(oos)
if batch == "calm":  # like the training data: in-scope intents, one out-of-scope query
    rows = in_scope[:149] + oos[:1]
else:  # shifted: out-of-scope queries and one domain's questions about travel
    travel = [r for r in data["val"] if r[1] in ("book_flight", "book_hotel", "car_rental", "travel_suggestion", "exchange_rate")]
    rows = oos[1:76] + rng.sample(travel, 75)
client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key)
with open("answers.jsonl", "a") as out:
    for text, intent in rows:
        raw = client.chat.completions.with_raw_response.create(model="clinc150-demo", messages=[{"role": "user", "content": text}])
        out.write(json.dumps({"request_id": raw.headers["x-request-id"], "label": intent}) + "\n")
print(f"{batch}: {len(rows)} requests answered")
PY
}
traffic calm
sleep 2  # the prediction log flushes every second
"$SFTLINE" monitor

step "monitoring, shifted: 150 queries, half out of scope and half about travel; sftline monitor over that batch alone"
shifted_from=$(date -u +%Y-%m-%dT%H:%M:%S)
traffic shifted
sleep 2
"$SFTLINE" monitor --since "$shifted_from" --html monitor.html

step "feedback: correct intents for 100 served requests (and one that was never served), gated into clinc150-demo-feedback"
# The true intents, as a labelling team would send them back (one request id nobody sent).
( shuf -n 100 --random-source=<(yes) answers.jsonl; echo '{"request_id": "never-served", "label": "balance"}' ) > labels.jsonl
"$SFTLINE" feedback import labels.jsonl
"$SFTLINE" monitor --no-drift --json | "$PYTHON" -c '
import json, sys
r = json.load(sys.stdin); fb = r["slis"]["overall"]["feedback"]
print("feedback on {} served answers: accuracy {:.1%} ({:.1%}-{:.1%}), macro-F1 {:.1%}, ECE {:.1%}".format(
    fb["labelled"], fb["accuracy"]["value"], fb["accuracy"]["low"], fb["accuracy"]["high"], fb["macro_f1"]["value"], fb["ece"]["value"]))
print("alerts firing:", ", ".join(a["name"] for a in r["alerts"]["firing"]) or "none")'
"$SFTLINE" review list --limit 5
kill -TERM $SERVER; wait $SERVER 2>/dev/null || true
trap - EXIT
echo "to retrain on the feedback: add clinc150-demo-feedback to line.mix.from, then \`$SFTLINE retrain --if-triggered\`"
echo "the dashboard: $SFTLINE -C $(pwd) ui --port 8080, then open http://127.0.0.1:8080/ (sign in with a key from \`$SFTLINE keys add NAME --scope admin\` to promote, roll back or label)"

printf '\nreports in %s: gates.html, release.html, eval-smollm2.html, monitor.html\n' "$(pwd)"
printf 'the demo took %dm%02ds\n' $((SECONDS / 60)) $((SECONDS % 60))
