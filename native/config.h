// The model configuration as a plain struct. config.json is parsed and validated in
// TypeScript (where the error can name the file and field); native re-checks the invariants
// its tensor code relies on, so a bad struct can never index out of bounds.
#pragma once
#include <cstdint>
#include <string>

namespace cascade {

struct ModelConfig {
  std::string architecture;  // LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry a bias (Qwen2; Llama attention_bias)
  bool output_bias = false;     // o_proj carries a bias (Llama attention_bias)
  int64_t sliding_window = 0;   // 0: full attention
  // rope_scaling {"rope_type": "llama3"}; rope_factor == 0 means no scaling.
  double rope_factor = 0, rope_low_freq_factor = 1, rope_high_freq_factor = 4;
  int64_t rope_original_max_position = 8192;

  // Throws std::invalid_argument describing the first violated invariant.
  void validate() const;
};

}  // namespace cascade
