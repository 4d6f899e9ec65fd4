#!/usr/bin/env bash
# Retrains the whole default family from GSM8K train (as committed in models/), on this
# project's own code. About 1.5 hours on a 2-core machine when the three models train two at a
# time (1 thread each), then about 35 minutes for the distilled drafts (the target's greedy
# answers to GSM8K train questions, then mid and small fine-tuned on them from their weights;
# docs/model-family.md, "Distilled drafts"). DATA defaults to ../shared/data/gsm8k.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/gsm8k}
npx tsc -p tsconfig.build.json
node dist/scripts/train-tokenizer.js --data "$DATA/train.jsonl" --format gsm8k --vocab-size 4096 --out models/tokenizer --eval "$DATA/test.jsonl"
common=(--data "$DATA/train.jsonl" --eval "$DATA/test.jsonl" --tokenizer models/tokenizer --batch 8 --warmup 100 --eval-every 100 --checkpoint-every 100)
node dist/scripts/train.js "${common[@]}" --out models/target --preset target --steps 1500 --lr 1.5e-3 --seed 1 &
node dist/scripts/train.js "${common[@]}" --out models/mid --preset mid --steps 1100 --lr 2e-3 --seed 2
node dist/scripts/train.js "${common[@]}" --out models/small --preset small --steps 1000 --lr 3e-3 --seed 3
wait
# Distilled drafts: derived data, kept out of git under models/.train-state.
DISTILL=models/.train-state/distill/target-greedy-train.jsonl
node dist/scripts/distill-data.js --model models/target --data "$DATA/train.jsonl" --out "$DISTILL" --batch 32 --max-new-tokens 160
dcommon=(--data "$DISTILL" --eval "$DATA/test.jsonl" --tokenizer models/tokenizer --batch 8 --warmup 30 --eval-every 100 --checkpoint-every 100)
# --init reads the base weights before the first checkpoint overwrites the folder; an
# interrupted run must be continued with --resume (not restarted: it would start from its own checkpoint).
node dist/scripts/train.js "${dcommon[@]}" --init models/mid --out models/mid --state-dir models/.train-state/mid-distill --preset mid --steps 700 --lr 1e-3 --seed 12 &
node dist/scripts/train.js "${dcommon[@]}" --init models/small --out models/small --state-dir models/.train-state/small-distill --preset small --steps 1000 --lr 1.5e-3 --seed 13
wait
for m in mid small; do cp "models/.train-state/$m-distill/log.jsonl" "docs/training/$m-distill.jsonl"; done
node dist/scripts/build-bigram.js --data "$DATA/train.jsonl" --tokenizer models/tokenizer --out models/target
for m in target mid small; do cp "models/.train-state/$m/log.jsonl" "docs/training/$m.jsonl"; done
node dist/scripts/eval-family.js --models models --test "$DATA/test.jsonl" --out docs
