// cascade-spec: the public API.
export { Model, type LoadOptions } from './model';
export { Sequence } from './sequence';
export { TextTokenizer } from './tokenizer';
export { parseModelConfig, SUPPORTED_ARCHITECTURES, type ModelConfig } from './config';
export type { GenerateOptions } from './options';
export type { GenerationResult, GenerationStats, FinishReason, GenerationStream } from './generate';
export type { Dtype } from './native';
export { loadNative } from './native';
