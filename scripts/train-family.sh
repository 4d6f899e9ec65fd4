#!/usr/bin/env bash
# Retrains the whole default family from GSM8K train (as committed in models/), on this
# project's own code, two runs at a time (1 thread each). On an otherwise idle 2-core machine,
# from each run's logged throughput: about 45 minutes for the three models (the target's run is
# the long one), then about 80 for the distilled drafts (3 for the target's greedy answers to
# GSM8K train questions, then mid and small fine-tuned on them from their weights in two rounds,
# the small in two more; then, on answers only with the target's greedy labels and its sampled
# answers as well, the mid in two more and the small in three (about 75 minutes more since the
# trainer stopped page-faulting its activations); then the drafts' draft vocabularies;
# docs/model-family.md, "Distilled drafts"). On a busy machine it took up to twice as long.
# DATA defaults to ../shared/data/gsm8k.
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
# Second round: the same data, more epochs, from the first round's weights (mid 1.1 -> 3.0
# epochs of it, small 1.6 -> 4.8; about 35 minutes more, the two concurrently).
node dist/scripts/train.js "${dcommon[@]}" --init models/mid --out models/mid --state-dir models/.train-state/mid-distill2 --preset mid --steps 1200 --lr 7e-4 --seed 22 &
node dist/scripts/train.js "${dcommon[@]}" --init models/small --out models/small --state-dir models/.train-state/small-distill2 --preset small --steps 2000 --lr 1e-3 --seed 23
wait
# Third round, the small only (it drafts in the tuned cascade): 1500 steps more (2.4 epochs),
# about 14 minutes alone.
node dist/scripts/train.js "${dcommon[@]}" --init models/small --out models/small --state-dir models/.train-state/small-distill3 --preset small --steps 1500 --lr 7e-4 --seed 33
# Fourth round, the small only: 2500 steps more at a lower peak lr (4 epochs), about 25 minutes alone.
node dist/scripts/train.js "${dcommon[@]}" --init models/small --out models/small --state-dir models/.train-state/small-distill4 --preset small --steps 2500 --lr 5e-4 --seed 44
# Later rounds train on answers only (--answers-only: the loss counts the answer tokens, the
# questions only feed the context) and, from the sixth small / fourth mid round on, label every
# position with the target's own greedy token (--teacher models/target --kd-term argmax) over
# the greedy answers plus two passes of the target's answers sampled at temperature 0.7: text
# the target writes but the greedy pass never reaches, so the drafts overfit the greedy answers
# less. Each round starts from the previous one's weights.
SAMPLED1=models/.train-state/distill/target-t07-s1.jsonl
SAMPLED2=models/.train-state/distill/target-t07-s2.jsonl
node dist/scripts/distill-data.js --model models/target --data "$DATA/train.jsonl" --out "$SAMPLED1" --batch 32 --max-new-tokens 160 --temperature 0.7 --seed 100000
node dist/scripts/distill-data.js --model models/target --data "$DATA/train.jsonl" --out "$SAMPLED2" --batch 32 --max-new-tokens 160 --temperature 0.7 --seed 200000
acommon=(--tokenizer models/tokenizer --batch 8 --warmup 30 --checkpoint-every 500 --answers-only)
kd=(--teacher models/target --kd-term argmax --kd-weight 1)
node dist/scripts/train.js "${acommon[@]}" --data "$DISTILL" --eval "$DATA/test.jsonl" --eval-every 200 --init models/small --out models/small --state-dir models/.train-state/small-distill5 --preset small --steps 4000 --lr 5e-4 --seed 55 &
node dist/scripts/train.js "${acommon[@]}" --data "$DISTILL" --init models/mid --out models/mid --state-dir models/.train-state/mid-distill3 --preset mid --steps 6000 --lr 5e-4 --seed 88
wait
node dist/scripts/train.js "${acommon[@]}" "${kd[@]}" --data "$DISTILL,$SAMPLED1" --init models/small --out models/small --state-dir models/.train-state/small-distill6 --preset small --steps 5000 --lr 5e-4 --seed 77 &
node dist/scripts/train.js "${acommon[@]}" "${kd[@]}" --data "$DISTILL,$SAMPLED1,$SAMPLED2" --init models/mid --out models/mid --state-dir models/.train-state/mid-distill4 --preset mid --steps 2500 --lr 4e-4 --seed 111
wait
node dist/scripts/train.js "${acommon[@]}" "${kd[@]}" --data "$DISTILL,$SAMPLED1,$SAMPLED2" --init models/small --out models/small --state-dir models/.train-state/small-distill7 --preset small --steps 5000 --lr 4e-4 --seed 99
# Rounds 8 and 9 (stop 12), the small only: four more sampled passes (temperatures 0.7, 1.0,
# 0.7, 0.85; at 1.0 many answers do not round-trip through the tokenizer and are skipped), the
# same objective. About 4 minutes per pass and 30 minutes per round on one core.
SAMPLED3=models/.train-state/distill/target-t07-s3.jsonl
SAMPLED4=models/.train-state/distill/target-t10-s4.jsonl
SAMPLED5=models/.train-state/distill/target-t07-s5.jsonl
SAMPLED6=models/.train-state/distill/target-t085-s6.jsonl
node dist/scripts/distill-data.js --model models/target --data "$DATA/train.jsonl" --out "$SAMPLED3" --batch 32 --max-new-tokens 160 --temperature 0.7 --seed 300000
node dist/scripts/distill-data.js --model models/target --data "$DATA/train.jsonl" --out "$SAMPLED4" --batch 32 --max-new-tokens 160 --temperature 1.0 --seed 400000
node dist/scripts/train.js "${acommon[@]}" "${kd[@]}" --data "$DISTILL,$SAMPLED1,$SAMPLED2,$SAMPLED3,$SAMPLED4" --init models/small --out models/small --state-dir models/.train-state/small-distill8 --preset small --steps 5000 --lr 4e-4 --seed 131
node dist/scripts/distill-data.js --model models/target --data "$DATA/train.jsonl" --out "$SAMPLED5" --batch 32 --max-new-tokens 160 --temperature 0.7 --seed 500000
node dist/scripts/distill-data.js --model models/target --data "$DATA/train.jsonl" --out "$SAMPLED6" --batch 32 --max-new-tokens 160 --temperature 0.85 --seed 600000
node dist/scripts/train.js "${acommon[@]}" "${kd[@]}" --data "$DISTILL,$SAMPLED1,$SAMPLED2,$SAMPLED3,$SAMPLED4,$SAMPLED5,$SAMPLED6" --init models/small --out models/small --state-dir models/.train-state/small-distill9 --preset small --steps 6000 --lr 3e-4 --seed 141
# Draft vocabularies: the target's answer tokens on the training questions, then reference ones.
node dist/scripts/build-draft-vocab.js --target "$DISTILL" --reference "$DATA/train.jsonl" --tokenizer models/tokenizer --size 512 --out models/small,models/mid
for m in mid small; do
  cp "models/.train-state/$m-distill/log.jsonl" "docs/training/$m-distill.jsonl"
  cp "models/.train-state/$m-distill2/log.jsonl" "docs/training/$m-distill2.jsonl"
done
cp models/.train-state/small-distill3/log.jsonl docs/training/small-distill3.jsonl
cp models/.train-state/small-distill4/log.jsonl docs/training/small-distill4.jsonl
for r in 5 6 7 8 9; do cp "models/.train-state/small-distill$r/log.jsonl" "docs/training/small-distill$r.jsonl"; done
for r in 3 4; do cp "models/.train-state/mid-distill$r/log.jsonl" "docs/training/mid-distill$r.jsonl"; done
node dist/scripts/build-bigram.js --data "$DATA/train.jsonl" --tokenizer models/tokenizer --out models/target
for m in target mid small; do cp "models/.train-state/$m/log.jsonl" "docs/training/$m.jsonl"; done
node dist/scripts/eval-family.js --models models --test "$DATA/test.jsonl" --out docs
