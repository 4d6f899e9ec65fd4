/**
 * Independent plain-TypeScript reference forward of the Hugging Face Llama family (Llama,
 * Mistral, Qwen2 — same block, differing in biases / sliding window), in float64.
 *
 * It is deliberately naive: no KV cache, full causal attention from position 0 on every call,
 * one loop per formula, so it can be read against transformers' modeling_llama.py line by line
 * and trusted as the ground truth the native (libtorch) forward is compared with. Only meant for
 * tiny models: cost is O(T^2) per forward and greedy() re-runs the whole prefix every step.
 */
import * as fs from 'fs';
import * as path from 'path';
import { LoadedTensor, readSafetensors } from '../helpers/safetensors';

export interface LlamaConfig {
  model_type?: string;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  head_dim?: number | null;
  rms_norm_eps?: number;
  rope_theta?: number;
  rope_scaling?: {
    rope_type?: string;
    type?: string;
    factor?: number;
    low_freq_factor?: number;
    high_freq_factor?: number;
    original_max_position_embeddings?: number;
  } | null;
  tie_word_embeddings?: boolean;
  sliding_window?: number | null;
  use_sliding_window?: boolean;
  max_window_layers?: number;
  layer_types?: string[];
  bos_token_id?: number;
  eos_token_id?: number | number[];
}

type Mat = { data: Float64Array; rows: number; cols: number };

interface Layer {
  inNorm: Float64Array;
  postNorm: Float64Array;
  q: Mat; k: Mat; v: Mat; o: Mat;
  qb?: Float64Array; kb?: Float64Array; vb?: Float64Array; ob?: Float64Array;
  gate: Mat; up: Mat; down: Mat;
  /** Sliding window for this layer, or Infinity for full causal attention. */
  window: number;
}

/** y[r] = W[r,:] . x (+ b[r]) — the nn.Linear convention (weight is [out, in]). */
function linear(W: Mat, x: Float64Array, b?: Float64Array): Float64Array {
  const y = new Float64Array(W.rows);
  for (let r = 0; r < W.rows; r++) {
    let s = b ? b[r] : 0;
    const off = r * W.cols;
    for (let c = 0; c < W.cols; c++) s += W.data[off + c] * x[c];
    y[r] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i] * inv * w[i];
  return y;
}

/**
 * RoPE inverse frequencies, including transformers' _compute_llama3_parameters when
 * rope_scaling is llama3 (other scaling types are rejected rather than silently ignored).
 */
export function ropeInvFreq(cfg: LlamaConfig, headDim: number): Float64Array {
  const theta = cfg.rope_theta ?? 10000;
  const inv = new Float64Array(headDim / 2);
  for (let i = 0; i < headDim / 2; i++) inv[i] = 1 / Math.pow(theta, (2 * i) / headDim);
  const rs = cfg.rope_scaling;
  const kind = rs ? rs.rope_type ?? rs.type : undefined;
  if (!rs || kind === undefined || kind === 'default') return inv;
  if (kind !== 'llama3') throw new Error(`reference: unsupported rope_scaling ${kind}`);
  const factor = rs.factor ?? 8;
  const low = rs.low_freq_factor ?? 1;
  const high = rs.high_freq_factor ?? 4;
  const orig = rs.original_max_position_embeddings ?? 8192;
  const lowWavelen = orig / low;
  const highWavelen = orig / high;
  for (let i = 0; i < inv.length; i++) {
    const wavelen = (2 * Math.PI) / inv[i];
    if (wavelen > lowWavelen) inv[i] = inv[i] / factor;
    else if (wavelen >= highWavelen) {
      // Medium band: interpolate between scaled and unscaled (HF: ~is_low & ~is_high).
      const smooth = (orig / wavelen - low) / (high - low);
      inv[i] = ((1 - smooth) * inv[i]) / factor + smooth * inv[i];
    }
  }
  return inv;
}

/** HF rotate_half layout: dimension i pairs with i + hd/2, both using inv_freq[i]. In place. */
export function applyRope(x: Float64Array, off: number, hd: number, pos: number, inv: Float64Array): void {
  const half = hd / 2;
  for (let i = 0; i < half; i++) {
    const a = pos * inv[i];
    const c = Math.cos(a);
    const s = Math.sin(a);
    const x1 = x[off + i];
    const x2 = x[off + i + half];
    x[off + i] = x1 * c - x2 * s;
    x[off + i + half] = x2 * c + x1 * s;
  }
}

const silu = (v: number) => v / (1 + Math.exp(-v));

export class ReferenceLlama {
  readonly headDim: number;
  readonly numKvHeads: number;
  private readonly invFreq: Float64Array;

  private constructor(
    readonly config: LlamaConfig,
    private readonly embed: Mat,
    private readonly layers: Layer[],
    private readonly finalNorm: Float64Array,
    private readonly lmHead: Mat,
  ) {
    this.headDim = config.head_dim ?? config.hidden_size / config.num_attention_heads;
    this.numKvHeads = config.num_key_value_heads ?? config.num_attention_heads;
    this.invFreq = ropeInvFreq(config, this.headDim);
  }

  /** Load config.json + model.safetensors (or the sharded index) from a HF model folder. */
  static load(dir: string): ReferenceLlama {
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as LlamaConfig;
    const indexPath = path.join(dir, 'model.safetensors.index.json');
    let tensors: Record<string, LoadedTensor> = {};
    if (fs.existsSync(indexPath)) {
      const index = JSON.parse(fs.readFileSync(indexPath, 'utf8')) as { weight_map: Record<string, string> };
      for (const file of new Set(Object.values(index.weight_map))) {
        Object.assign(tensors, readSafetensors(path.join(dir, file)));
      }
    } else {
      tensors = readSafetensors(path.join(dir, 'model.safetensors'));
    }

    const H = cfg.hidden_size;
    const nH = cfg.num_attention_heads;
    const nKV = cfg.num_key_value_heads ?? nH;
    const hd = cfg.head_dim ?? H / nH;
    const I = cfg.intermediate_size;
    const V = cfg.vocab_size;
    const get = (name: string, shape: number[]): Float64Array => {
      const t = tensors[name];
      if (!t) throw new Error(`reference: missing tensor ${name}`);
      if (t.shape.join(',') !== shape.join(',')) {
        throw new Error(`reference: ${name} has shape [${t.shape}], expected [${shape}]`);
      }
      return Float64Array.from(t.data);
    };
    const mat = (name: string, rows: number, cols: number): Mat => ({ data: get(name, [rows, cols]), rows, cols });
    const opt = (name: string, n: number) => (tensors[name] ? get(name, [n]) : undefined);

    const layers: Layer[] = [];
    for (let l = 0; l < cfg.num_hidden_layers; l++) {
      const p = `model.layers.${l}.`;
      layers.push({
        inNorm: get(p + 'input_layernorm.weight', [H]),
        postNorm: get(p + 'post_attention_layernorm.weight', [H]),
        q: mat(p + 'self_attn.q_proj.weight', nH * hd, H),
        k: mat(p + 'self_attn.k_proj.weight', nKV * hd, H),
        v: mat(p + 'self_attn.v_proj.weight', nKV * hd, H),
        o: mat(p + 'self_attn.o_proj.weight', H, nH * hd),
        // Biases are taken from what is stored: Qwen2 has q/k/v bias, Llama with
        // attention_bias: true also has o_proj bias.
        qb: opt(p + 'self_attn.q_proj.bias', nH * hd),
        kb: opt(p + 'self_attn.k_proj.bias', nKV * hd),
        vb: opt(p + 'self_attn.v_proj.bias', nKV * hd),
        ob: opt(p + 'self_attn.o_proj.bias', H),
        gate: mat(p + 'mlp.gate_proj.weight', I, H),
        up: mat(p + 'mlp.up_proj.weight', I, H),
        down: mat(p + 'mlp.down_proj.weight', H, I),
        window: ReferenceLlama.layerWindow(cfg, l),
      });
    }
    const embed = mat('model.embed_tokens.weight', V, H);
    // transformers ties lm_head to embed_tokens whenever tie_word_embeddings is true, ignoring a
    // stored lm_head.weight (HF's default for tie_word_embeddings is true; Llama configs usually
    // state it explicitly).
    const tied = cfg.tie_word_embeddings ?? true;
    const lmHead = tied ? embed : mat('lm_head.weight', V, H);
    return new ReferenceLlama(cfg, embed, layers, get('model.norm.weight', [H]), lmHead);
  }

  /** Sliding window of layer l (Infinity = none), following transformers' config conventions. */
  private static layerWindow(cfg: LlamaConfig, l: number): number {
    const w = cfg.sliding_window;
    if (w === undefined || w === null) return Infinity;
    if (cfg.layer_types) return cfg.layer_types[l] === 'sliding_attention' ? w : Infinity;
    if (cfg.model_type === 'qwen2') {
      // Qwen2 ships sliding_window even when disabled; it only applies with use_sliding_window,
      // and then to layers >= max_window_layers.
      return cfg.use_sliding_window && l >= (cfg.max_window_layers ?? 0) ? w : Infinity;
    }
    if (cfg.model_type === 'llama') return Infinity; // Llama has no sliding window
    return w; // Mistral and friends: every layer
  }

  /** Logits [T][V] for every position of `tokens` (a fresh, cache-free pass from position 0). */
  forward(tokens: number[]): number[][] {
    return this.run(tokens, false).map((r) => Array.from(r));
  }

  /**
   * Greedy continuation: exactly n new tokens (no stop on EOS, so lengths are predictable when
   * comparing against another decoder). Ties resolve to the lowest id, like torch.argmax.
   */
  greedy(promptTokens: number[], n: number): number[] {
    const seq = [...promptTokens];
    const out: number[] = [];
    for (let step = 0; step < n; step++) {
      const logits = this.run(seq, true)[0];
      let best = 0;
      for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
      out.push(best);
      seq.push(best);
    }
    return out;
  }

  private run(tokens: number[], lastOnly: boolean): Float64Array[] {
    const cfg = this.config;
    const H = cfg.hidden_size;
    const nH = cfg.num_attention_heads;
    const nKV = this.numKvHeads;
    const hd = this.headDim;
    const eps = cfg.rms_norm_eps ?? 1e-6;
    const T = tokens.length;
    if (T === 0) throw new Error('reference: empty token list');
    const groups = nH / nKV; // query heads per kv head (GQA)
    const scale = 1 / Math.sqrt(hd);

    // Residual stream, one row per position.
    const x: Float64Array[] = tokens.map((t) => {
      if (!Number.isInteger(t) || t < 0 || t >= cfg.vocab_size) throw new Error(`reference: bad token ${t}`);
      return this.embed.data.slice(t * H, (t + 1) * H);
    });

    for (const layer of this.layers) {
      const q: Float64Array[] = [];
      const k: Float64Array[] = [];
      const v: Float64Array[] = [];
      for (let t = 0; t < T; t++) {
        const h = rmsNorm(x[t], layer.inNorm, eps);
        const qt = linear(layer.q, h, layer.qb);
        const kt = linear(layer.k, h, layer.kb);
        for (let head = 0; head < nH; head++) applyRope(qt, head * hd, hd, t, this.invFreq);
        for (let head = 0; head < nKV; head++) applyRope(kt, head * hd, hd, t, this.invFreq);
        q.push(qt);
        k.push(kt);
        v.push(linear(layer.v, h, layer.vb));
      }
      for (let i = 0; i < T; i++) {
        const attn = new Float64Array(nH * hd);
        const jStart = Math.max(0, i - layer.window + 1); // visible iff i - j < window
        for (let head = 0; head < nH; head++) {
          const kvh = Math.floor(head / groups);
          const scores: number[] = [];
          let max = -Infinity;
          for (let j = jStart; j <= i; j++) {
            let s = 0;
            for (let d = 0; d < hd; d++) s += q[i][head * hd + d] * k[j][kvh * hd + d];
            s *= scale;
            scores.push(s);
            if (s > max) max = s;
          }
          let sum = 0;
          for (let n = 0; n < scores.length; n++) sum += (scores[n] = Math.exp(scores[n] - max));
          for (let n = 0; n < scores.length; n++) {
            const p = scores[n] / sum;
            const vj = v[jStart + n];
            for (let d = 0; d < hd; d++) attn[head * hd + d] += p * vj[kvh * hd + d];
          }
        }
        const o = linear(layer.o, attn, layer.ob);
        for (let c = 0; c < H; c++) x[i][c] += o[c];
      }
      for (let t = 0; t < T; t++) {
        const h = rmsNorm(x[t], layer.postNorm, eps);
        const g = linear(layer.gate, h);
        const u = linear(layer.up, h);
        for (let r = 0; r < g.length; r++) g[r] = silu(g[r]) * u[r];
        const d = linear(layer.down, g);
        for (let c = 0; c < H; c++) x[t][c] += d[c];
      }
    }
    const rows = lastOnly ? [T - 1] : tokens.map((_, t) => t);
    return rows.map((t) => linear(this.lmHead, rmsNorm(x[t], this.finalNorm, eps)));
  }
}
