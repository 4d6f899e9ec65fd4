// The model's tokenizer (tokenizer.json via @huggingface/tokenizers) with the BOS/EOS policy
// taken from tokenizer_config.json, generation_config.json and config.json.
import * as fs from 'fs';
import * as path from 'path';

import { Tokenizer } from '@huggingface/tokenizers';

import type { ModelConfig } from './config';
import { readJsonObject, readOptionalJsonObject } from './files';

function specialTokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

export class TextTokenizer {
  private constructor(
    private readonly tokenizer: Tokenizer,
    /** Highest token id the tokenizer can produce, plus one. */
    readonly size: number,
    readonly bosId: number | undefined,
    readonly eosIds: number[],
    readonly addBos: boolean,
    readonly file: string,
  ) {}

  static load(dir: string, config: ModelConfig): TextTokenizer {
    const file = path.join(dir, 'tokenizer.json');
    if (!fs.existsSync(file)) throw new Error(`${file}: file not found (a model folder needs its tokenizer.json)`);
    const json = readJsonObject(file);
    const tokConfigFile = path.join(dir, 'tokenizer_config.json');
    const tokConfig = readOptionalJsonObject(tokConfigFile) ?? {};
    const genConfig = readOptionalJsonObject(path.join(dir, 'generation_config.json')) ?? {};
    // Decode text exactly as tokenized unless the model asks for clean-up.
    const libConfig = { ...tokConfig, clean_up_tokenization_spaces: tokConfig.clean_up_tokenization_spaces ?? false };
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(json, libConfig);
    } catch (e) {
      throw new Error(`${file}: cannot build the tokenizer: ${(e as Error).message}`);
    }
    const vocab = tokenizer.get_vocab(true);
    let size = 0;
    for (const id of vocab.values()) size = Math.max(size, id + 1);
    if (size > config.vocabSize)
      throw new Error(`${file}: the tokenizer has token ids up to ${size - 1} but config.json says vocab_size ${config.vocabSize}`);

    const idOf = (v: unknown): number | undefined => {
      const text = specialTokenText(v);
      return text === undefined ? undefined : tokenizer.token_to_id(text);
    };
    const asIds = (v: unknown): number[] | undefined =>
      typeof v === 'number' ? [v] : Array.isArray(v) && v.every((x) => typeof x === 'number') ? (v as number[]) : undefined;
    const bosId =
      (typeof genConfig.bos_token_id === 'number' ? genConfig.bos_token_id : undefined) ?? config.bosTokenId ?? idOf(tokConfig.bos_token);
    let eosIds = asIds(genConfig.eos_token_id) ?? (config.eosTokenIds.length ? config.eosTokenIds : undefined);
    if (!eosIds) {
      const e = idOf(tokConfig.eos_token);
      eosIds = e === undefined ? [] : [e];
    }
    for (const id of [...eosIds, ...(bosId === undefined ? [] : [bosId])])
      if (id >= config.vocabSize) throw new Error(`${dir}: special token id ${id} is outside the vocabulary (vocab_size ${config.vocabSize})`);

    // add_bos_token when the config says; otherwise whatever the tokenizer's post-processor does.
    let addBos: boolean;
    if (typeof tokConfig.add_bos_token === 'boolean') addBos = tokConfig.add_bos_token;
    else {
      const withSpecial = tokenizer.encode('a', { add_special_tokens: true }).ids;
      addBos = bosId !== undefined && withSpecial[0] === bosId;
    }
    if (addBos && bosId === undefined) throw new Error(`${tokConfigFile}: add_bos_token is true but no BOS token is defined`);
    return new TextTokenizer(tokenizer, size, bosId, eosIds, addBos, file);
  }

  /** Token ids of `text`, with BOS first when the model's configs ask for it. */
  encode(text: string, options: { addBos?: boolean } = {}): number[] {
    const ids = this.tokenizer.encode(text, { add_special_tokens: false }).ids;
    return (options.addBos ?? this.addBos) && this.bosId !== undefined ? [this.bosId, ...ids] : ids;
  }

  decode(ids: number[], options: { skipSpecialTokens?: boolean } = {}): string {
    return this.tokenizer.decode(ids, { skip_special_tokens: options.skipSpecialTokens ?? true });
  }

  /** The token's text as stored in the vocabulary, for comparing vocabularies. */
  tokenText(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }
}
