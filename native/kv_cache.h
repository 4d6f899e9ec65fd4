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

  // [num_layers, num_kv_heads, slots, head_dim], slots = capacity rounded up to a multiple of 16
  // (positions past capacity are never used). A model on the kernels stores each kv head's keys
  // in blocks of 16 positions, [slots / 16][head_dim][16] (see kernels::attention).
  torch::Tensor keys, values;
  // RoPE tables for every position of this cache, [capacity, head_dim / 2], compute dtype.
  torch::Tensor cos, sin;

 private:
  int64_t capacity_;
  int64_t length_ = 0;
};

}  // namespace cascade
