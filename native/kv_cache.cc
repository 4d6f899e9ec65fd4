#include "kv_cache.h"

namespace cascade {

KVCache::KVCache(const ModelConfig& cfg, const torch::Tensor& inv_freq, int64_t capacity,
                 torch::ScalarType dtype, torch::Device device)
    : capacity_(capacity) {
  auto opts = torch::TensorOptions().dtype(dtype).device(device);
  keys = torch::zeros({cfg.num_layers, cfg.num_kv_heads, (capacity + 15) / 16 * 16, cfg.head_dim}, opts);
  values = torch::zeros_like(keys);
  // Angles in float64 so that long positions keep their precision before the cast.
  auto pos = torch::arange(capacity, torch::TensorOptions().dtype(torch::kFloat64));
  auto angles = torch::outer(pos, inv_freq.to(torch::kFloat64));
  cos = angles.cos().to(opts);
  sin = angles.sin().to(opts);
}

void KVCache::set_length(int64_t n) {
  if (n < 0 || n > capacity_)
    throw std::out_of_range("cache length " + std::to_string(n) + " outside [0, " +
                            std::to_string(capacity_) + "]");
  length_ = n;
}

}  // namespace cascade
