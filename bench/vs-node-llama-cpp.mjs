// cascade-spec against node-llama-cpp (llama.cpp) on the same models, prompts and machine.
//
// node-llama-cpp is not a dependency of this project: install it anywhere node can resolve it
// (e.g. `npm install --no-save node-llama-cpp@3.22.1`, whose npm package carries prebuilt CPU
// binaries), export the family to GGUF with `node dist/scripts/export-gguf.js`, then:
//
//   for t in bf16 f16; do for m in target small; do
//     node dist/scripts/export-gguf.js --model models/$m --type $t --out /tmp/gguf/$t/$m.gguf; done; done
//   node bench/vs-node-llama-cpp.mjs --dataset ../shared/data/gsm8k/test.jsonl --gguf /tmp/gguf/bf16,/tmp/gguf/f16 \
//     --limit 100 --max-new-tokens 128 --out bench/results/vs-node-llama-cpp/results.json
//
// Every method gets the same prompt token ids (our tokenizer's, BOS included), greedy, up to
// --max-new-tokens or EOS, 1 thread each, and the methods take turns prompt by prompt in this
// one process, so the machine's drift hits them alike. Reported: wall time per request (prompt
// included), tokens per second, speedup over node-llama-cpp's plain decoding (the first --gguf
// folder's), and per prompt whether the tokens equal the method's own plain decoding (a
// speculative method should never change them) and cascade-spec AR's (llama.cpp's arithmetic
// differs from ours, so its text may part from ours where two logits nearly tie).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const { loadFamily, familyCascadeEntry } = require(path.join(here, '../dist/lib/cli/family.js'));
const { parseMethod } = require(path.join(here, '../dist/lib/cli/methods.js'));
const { readPrompts } = require(path.join(here, '../dist/lib/cli/datasets.js'));
const { promptTemplate } = require(path.join(here, '../dist/lib/cli/defaults.js'));

const { scriptFlags } = require(path.join(here, '../dist/lib/cli/args.js'));

const FLAGS = {
  dataset: { type: 'string', help: 'GSM8K jsonl' },
  gguf: { type: 'string', help: 'GGUF folders, comma-separated, each holding target.gguf and small.gguf' },
  limit: { type: 'int', help: 'prompts', default: 100, min: 1 },
  'max-new-tokens': { type: 'int', help: 'tokens per prompt', default: 128, min: 1 },
  out: { type: 'string', help: 'JSON file for the results' },
  help: { type: 'boolean', help: 'show this help' },
};
let f;
try {
  f = scriptFlags(process.argv.slice(2), FLAGS, 'node bench/vs-node-llama-cpp.mjs --dataset FILE --gguf DIR[,DIR] [--limit N] [--max-new-tokens N] [--out FILE]', ['dataset', 'gguf']);
} catch (e) {
  console.error(`vs-node-llama-cpp: ${e.message}`);
  process.exit(2);
}
if (!f) process.exit(0);
const limit = f.limit, maxNew = f['max-new-tokens'];
let nlc;
try {
  nlc = await import('node-llama-cpp');
} catch (e) {
  console.error(`node-llama-cpp is not installed (${e.message}); npm install --no-save node-llama-cpp@3.22.1`);
  process.exit(2);
}
const { getLlama, LlamaLogLevel, DraftSequenceTokenPredictor } = nlc;

// cascade-spec: the default family, bf16 kernels, 1 thread; csd = the cascade.json entry for these kernels.
const family = await loadFamily({ dtype: 'bfloat16', threads: 1 });
const target = family.target;
const EOS = target.tokenizer.eosIds[0];
const entry = familyCascadeEntry(undefined, { kernels: target.kernels, sampling: false });
const ours = ['ar', 'sd:small@3', 'csd'].map((s) => parseMethod(s, family, { k: 4, draft: 'small', cascade: entry.cascade }));

// node-llama-cpp: the same models as GGUF, 1 thread. Per folder: plain decoding, and its draft-model
// predictor with the small draft at its own defaults (it drafts in the background and the target
// takes whatever is drafted when it is ready to verify, up to 16 tokens, stopping below confidence
// 0.6) and at our sd:small@3's setting (the target waits for 3 drafted tokens, no confidence stop).
const llama = await getLlama({ gpu: false, build: 'never', maxThreads: 1, logLevel: LlamaLogLevel.error });
const ctxOpts = { contextSize: 256, threads: 1, batchSize: 256, sequences: 1 };
const nlcMethods = [];
for (const dir of String(f.gguf).split(',')) {
  const label = path.basename(dir);
  const nTarget = await llama.loadModel({ modelPath: path.join(dir, 'target.gguf') });
  const nSmall = await llama.loadModel({ modelPath: path.join(dir, 'small.gguf') });
  nlcMethods.push({ name: `node-llama-cpp ${label} ar`, seq: (await nTarget.createContext(ctxOpts)).getSequence() });
  for (const [minTokens, maxTokens, minConfidence] of [[0, 16, 0.6], [3, 3, 0]]) {
    const draft = (await nSmall.createContext(ctxOpts)).getSequence();
    const predictor = new DraftSequenceTokenPredictor(draft, { minTokens, maxTokens, minConfidence });
    const seq = (await nTarget.createContext(ctxOpts)).getSequence({ tokenPredictor: predictor });
    nlcMethods.push({ name: `node-llama-cpp ${label} sd:small ${minTokens ? `@${maxTokens}` : `defaults (max ${maxTokens}, conf ${minConfidence})`}`, seq, predictions: true });
  }
}

function nlcVersion() {
  let start;
  try {
    start = path.dirname(fileURLToPath(import.meta.resolve('node-llama-cpp'))); // Node >= 20.6
  } catch {
    return 'unknown';
  }
  for (let d = start; d !== path.dirname(d); d = path.dirname(d)) {
    const file = path.join(d, 'package.json');
    if (fs.existsSync(file) && JSON.parse(fs.readFileSync(file, 'utf8')).name === 'node-llama-cpp') return JSON.parse(fs.readFileSync(file, 'utf8')).version;
  }
  return 'unknown';
}

async function runNlc(seq, ids) {
  await seq.clearHistory();
  const before = { ...seq.tokenPredictions };
  const out = [];
  const t0 = performance.now();
  for await (const t of seq.evaluate(ids, { temperature: 0 })) {
    if (t === EOS) break;
    out.push(t);
    if (out.length >= maxNew) break;
  }
  const ms = performance.now() - t0;
  const p = seq.tokenPredictions, counts = {};
  for (const k of ['used', 'unused', 'validated', 'refuted']) counts[k] = (p[k] ?? 0) - (before[k] ?? 0);
  return { tokens: out, ms, counts };
}

async function runOurs(method, text) {
  const t0 = performance.now();
  const r = await target.generate(text, { ...method.options, maxNewTokens: maxNew });
  return { tokens: r.tokens.filter((t) => t !== EOS), ms: performance.now() - t0 };
}

const template = promptTemplate(target.dir) ?? '{prompt}';
const prompts = readPrompts(f.dataset, 'gsm8k', limit).map((q) => template.replace('{prompt}', q));
const names = [...ours.map((m) => `cascade-spec ${m.name}`), ...nlcMethods.map((m) => m.name)];
const acc = Object.fromEntries(names.map((n) => [n, { ms: 0, tokens: 0, sameAsOursAR: 0, sameAsOwnAR: 0, predicted: null }]));
// Each method's own plain decoding: cascade-spec's AR for ours, the same GGUF folder's for node-llama-cpp's.
const ownAR = Object.fromEntries(names.map((n) => [n, n.startsWith('cascade-spec') ? 'cascade-spec ar' : n.replace(/ (ar|sd:.*)$/, ' ar')]));
for (const m of nlcMethods) if (m.predictions) acc[m.name].predicted = { used: 0, unused: 0, validated: 0, refuted: 0 };
for (let i = 0; i < prompts.length; ++i) {
  const text = prompts[i];
  const ids = target.encodePrompt(text);
  const results = {};
  for (const m of ours) results[`cascade-spec ${m.name}`] = await runOurs(m, text);
  for (const m of nlcMethods) results[m.name] = await runNlc(m.seq, ids);
  const ref = results['cascade-spec ar'].tokens.join(',');
  for (const [n, r] of Object.entries(results)) {
    acc[n].ms += r.ms;
    acc[n].tokens += r.tokens.length;
    if (r.tokens.join(',') === ref) acc[n].sameAsOursAR += 1;
    if (r.tokens.join(',') === results[ownAR[n]].tokens.join(',')) acc[n].sameAsOwnAR += 1;
    if (acc[n].predicted) for (const k of Object.keys(acc[n].predicted)) acc[n].predicted[k] += r.counts[k];
  }
  process.stderr.write(`\r${i + 1}/${prompts.length}`);
}
process.stderr.write('\n');
const baseName = nlcMethods[0].name;
const base = acc[baseName].tokens / acc[baseName].ms;
const rows = names.map((n) => ({
  name: n,
  msPerRequest: acc[n].ms / prompts.length,
  tokensPerSecond: (acc[n].tokens / acc[n].ms) * 1000,
  speedupVsLlamaCppAR: /* vs the first --gguf folder's ar */ acc[n].tokens / acc[n].ms / base,
  identicalToOursAR: `${acc[n].sameAsOursAR}/${prompts.length}`,
  identicalToOwnAR: `${acc[n].sameAsOwnAR}/${prompts.length}`,
  ...(acc[n].predicted ? { tokenPredictions: acc[n].predicted } : {}),
}));
console.log(`| method | ms / request | tok/s | vs ${baseName} | same tokens as its own AR | as cascade-spec AR |`);
console.log('|---|---|---|---|---|---|');
for (const r of rows)
  console.log(`| ${r.name} | ${r.msPerRequest.toFixed(1)} | ${r.tokensPerSecond.toFixed(1)} | ${r.speedupVsLlamaCppAR.toFixed(2)}x | ${r.identicalToOwnAR} | ${r.identicalToOursAR} |`);
for (const r of rows) if (r.tokenPredictions) console.log(`${r.name}: ${JSON.stringify(r.tokenPredictions)}`);
const report = { dataset: f.dataset, prompts: prompts.length, maxNewTokens: maxNew, threads: 1, dtype: 'bfloat16', kernels: target.kernels,
  familyCascade: entry.key, nodeLlamaCpp: nlcVersion(), llamaCppBuild: { type: llama.buildType, systemInfo: llama.systemInfo },
  date: new Date().toISOString(), methods: rows };
if (f.out) { fs.mkdirSync(path.dirname(f.out), { recursive: true }); fs.writeFileSync(f.out, JSON.stringify(report, null, 2) + '\n'); }
