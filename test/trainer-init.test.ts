/**
 * Fine-tuning from an existing checkpoint:
 * - Trainer.loadWeights: a trained-a-step model saved and loaded into a fresh trainer has the
 *   same weights (byte-identical re-save) and the same eval loss; bad files throw an Error naming
 *   the file and the tensor and leave the trainer's weights as they were;
 * - train.ts's --init config check.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { parseModelConfig } from '../lib/config';
import { Model } from '../lib/model';
import { loadNative, type NativeConfig, type NativeTrainer } from '../lib/native';
import { initConfigMismatches } from '../scripts/train';
import { readSafetensors, writeSafetensors, type TensorSpec } from './helpers/safetensors';
import { makeTinyModel, mulberry32, TRAINABLE_TINY } from './helpers/tiny-model';

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** A regex requiring `file`, then each word in order. */
const about = (file: string, ...words: string[]) => new RegExp([file, ...words].map(escape).join('[^]*'));

let tmp: string;
let tinyDir: string;
let cfg: NativeConfig;
const B = 4, T = 32;

function batch(seed: number, vocab: number): Int32Array {
  const r = mulberry32(seed);
  return Int32Array.from({ length: B * (T + 1) }, () => Math.floor(r() * vocab));
}

function trainer(seed: number): NativeTrainer {
  return new (loadNative().Trainer)(cfg, { seed, bf16: false, threads: 1 });
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-trainer-init-'));
  tinyDir = path.join(tmp, 'tiny');
  makeTinyModel(tinyDir, TRAINABLE_TINY);
  cfg = parseModelConfig(tinyDir);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('Trainer.loadWeights', () => {
  test('a model trained a step, saved and loaded into a fresh trainer: same weights, same eval loss', () => {
    const data = batch(1, cfg.vocabSize), held = batch(2, cfg.vocabSize);
    const a = trainer(1);
    a.step(data, B, 1e-2);
    const f32 = path.join(tmp, 'a-f32.safetensors'), bf16 = path.join(tmp, 'a-bf16.safetensors');
    a.saveWeights(f32, 'F32');
    a.saveWeights(bf16, 'BF16');

    const b = trainer(2); // other random weights
    expect(b.evalLoss(held, B)).not.toBe(a.evalLoss(held, B));
    b.loadWeights(f32);
    expect(b.evalLoss(held, B)).toBe(a.evalLoss(held, B));
    const again = path.join(tmp, 'b-f32.safetensors');
    b.saveWeights(again, 'F32');
    expect(fs.readFileSync(again).equals(fs.readFileSync(f32))).toBe(true);
    expect(b.stepsDone).toBe(0); // weights only: the optimizer starts afresh

    // bf16 storage (the family's): fp32 masters hold the bf16 values exactly, so a re-save is identical.
    const c = trainer(3);
    c.loadWeights([bf16]);
    const bfAgain = path.join(tmp, 'c-bf16.safetensors');
    c.saveWeights(bfAgain, 'BF16');
    expect(fs.readFileSync(bfAgain).equals(fs.readFileSync(bf16))).toBe(true);
    // and it trains on from there
    expect(Number.isFinite(c.step(data, B, 1e-3))).toBe(true);
  });

  test('an HF folder written elsewhere (the test helper) loads and scores as the inference model does', () => {
    const t = trainer(4);
    t.loadWeights(path.join(tinyDir, 'model.safetensors'));
    const held = batch(5, cfg.vocabSize);
    // Inference forward of the same weights: mean next-token NLL over the same windows.
    const model = Model.loadSync(tinyDir);
    let nll = 0;
    for (let b = 0; b < B; b++) {
      const row = held.subarray(b * (T + 1), (b + 1) * (T + 1));
      const logits = model.createSequence({ contextLength: T }).forwardSync(Int32Array.from(row.subarray(0, T)), { allLogits: true });
      for (let i = 0; i < T; i++) {
        const o = i * cfg.vocabSize;
        let max = -Infinity;
        for (let j = 0; j < cfg.vocabSize; j++) max = Math.max(max, logits[o + j]);
        let sum = 0;
        for (let j = 0; j < cfg.vocabSize; j++) sum += Math.exp(logits[o + j] - max);
        nll -= logits[o + row[i + 1]] - max - Math.log(sum);
      }
    }
    expect(t.evalLoss(held, B)).toBeCloseTo(nll / (B * T), 4);
  });

  describe('bad input: an Error naming the file and the tensor; weights unchanged; process alive', () => {
    let t: NativeTrainer;
    let before: number;
    const held = () => batch(9, cfg.vocabSize);
    let good: Record<string, TensorSpec>;
    beforeAll(() => {
      t = trainer(11);
      before = t.evalLoss(held(), B);
      good = readSafetensors(path.join(tinyDir, 'model.safetensors'));
    });
    afterEach(() => expect(t.evalLoss(held(), B)).toBe(before));

    test('missing file', () => {
      const f = path.join(tmp, 'nope', 'model.safetensors');
      expect(() => t.loadWeights(f)).toThrow(about(f));
    });

    test('missing tensor', () => {
      const f = path.join(tmp, 'missing.safetensors');
      const { ['model.layers.1.mlp.down_proj.weight']: _gone, ...rest } = good;
      writeSafetensors(f, rest);
      expect(() => t.loadWeights(f)).toThrow(about(f, 'missing tensor', 'model.layers.1.mlp.down_proj.weight'));
    });

    test('wrong shape', () => {
      const f = path.join(tmp, 'shape.safetensors');
      const bad = { ...good, 'model.layers.0.self_attn.k_proj.weight': { dtype: 'F32' as const, shape: [8, 32], data: new Float32Array(256) } };
      writeSafetensors(f, bad);
      expect(() => t.loadWeights(f)).toThrow(about(f, 'model.layers.0.self_attn.k_proj.weight', '[8, 32]', '[16, 32]'));
    });

    test('a tensor this configuration lacks (a deeper checkpoint)', () => {
      const f = path.join(tmp, 'extra.safetensors');
      writeSafetensors(f, { ...good, 'model.layers.2.input_layernorm.weight': { dtype: 'F32', shape: [32], data: new Float32Array(32) } });
      expect(() => t.loadWeights(f)).toThrow(about(f, 'unexpected tensor', 'model.layers.2.input_layernorm.weight'));
    });

    test('not a safetensors file; a tensor stored twice across shards; bad arguments', () => {
      const junk = path.join(tmp, 'junk.safetensors');
      fs.writeFileSync(junk, 'not a safetensors file at all');
      expect(() => t.loadWeights(junk)).toThrow(about(junk));
      const s1 = path.join(tmp, 's1.safetensors'), s2 = path.join(tmp, 's2.safetensors');
      writeSafetensors(s1, good);
      writeSafetensors(s2, { 'model.norm.weight': good['model.norm.weight'] });
      expect(() => t.loadWeights([s1, s2])).toThrow(about(s2, 'model.norm.weight', 'also stored in', s1));
      expect(() => t.loadWeights([])).toThrow(/no files/);
      expect(() => (t.loadWeights as (x: unknown) => void)(42)).toThrow(/must be a path or an array of paths/);
    });
  });
});

describe('train.ts --init config check', () => {
  test('a matching folder has no mismatches; another shape lists each differing field', () => {
    expect(initConfigMismatches(tinyDir, cfg)).toEqual([]);
    expect(initConfigMismatches(tinyDir, { ...cfg, hiddenSize: 64, numLayers: 3 })).toEqual(['hidden_size: 32 vs 64', 'num_hidden_layers: 2 vs 3']);
  });
});

