// A key/value cache allocated once for a sequence's whole context: appends write in place,
// truncation only moves the length, so nothing reallocates during a generation.
#pragma once
#include <torch/torch.h>

#include "config.h"

namespace cascade {

class KVCache {
 public:
  KVCache(const ModelConfig& cfg, const torch::Tensor& inv_freq, int64_t capacity,
          torch::ScalarType dtype, torch::Device device);

  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }
  void set_length(int64_t n);  // only ever shrinks or grows by what forward wrote

  // [num_layers, num_kv_heads, capacity, head_dim]
  torch::Tensor keys, values;
  // RoPE tables for every position of this cache, [capacity, head_dim / 2], compute dtype.
  torch::Tensor cos, sin;

 private:
  int64_t capacity_;
  int64_t length_ = 0;
};

}  // namespace cascade
