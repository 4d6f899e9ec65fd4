#include "config.h"

#include <stdexcept>

namespace cascade {

void ModelConfig::validate() const {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("invalid model config: " + what);
  };
  need(architecture == "LlamaForCausalLM" || architecture == "MistralForCausalLM" ||
           architecture == "Qwen2ForCausalLM",
       "unsupported architecture \"" + architecture + "\"");
  need(vocab_size > 0, "vocab_size must be positive");
  need(hidden_size > 0, "hidden_size must be positive");
  need(intermediate_size > 0, "intermediate_size must be positive");
  need(num_layers > 0, "num_hidden_layers must be positive");
  need(num_heads > 0 && num_kv_heads > 0, "head counts must be positive");
  need(num_heads % num_kv_heads == 0, "num_attention_heads must be a multiple of num_key_value_heads");
  need(head_dim > 0 && head_dim % 2 == 0, "head_dim must be positive and even");
  need(max_position_embeddings > 0, "max_position_embeddings must be positive");
  need(rms_norm_eps > 0, "rms_norm_eps must be positive");
  need(rope_theta > 0, "rope_theta must be positive");
  need(sliding_window >= 0, "sliding_window must be >= 0");
  need(rope_factor == 0 || (rope_factor >= 1 && rope_high_freq_factor > rope_low_freq_factor &&
                            rope_original_max_position > 0),
       "invalid llama3 rope_scaling");
}

}  // namespace cascade
