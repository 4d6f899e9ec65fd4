// A key/value cache allocated once for a sequence's whole context: appends write in place,
// truncation only moves the length, so nothing reallocates during a generation.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <mutex>
#include <vector>

#include "config.h"

namespace cascade {

// Cache buffers of finished sequences, kept for the next ones. A new generation creates a
// sequence per model; allocating and first touching its cache (fresh pages, each a fault) cost
// more than several decode steps, while zeroing a reused buffer costs a few microseconds.
class KVBufferPool {
 public:
  // A flat buffer of at least `numel` elements (at most twice that, so little is wasted): a
  // released one when one fits, else a new one. Its contents are unspecified.
  torch::Tensor acquire(int64_t numel, const torch::TensorOptions& options);
  // Takes a flat buffer back for reuse (dropped when the pool is full or someone else holds it).
  void release(torch::Tensor buffer);

 private:
  static constexpr size_t kMaxKept = 16;
  std::mutex mutex_;
  std::vector<torch::Tensor> kept_;
};

class KVCache {
 public:
  // cos / sin: the model's RoPE tables (see LlamaModel::rope_tables), at least `capacity` rows;
  // shared between the model's caches, never written.
  // pool: where the buffers come from and go back to when the cache is destroyed.
  KVCache(const ModelConfig& cfg, const torch::Tensor& cos, const torch::Tensor& sin, int64_t capacity,
          torch::ScalarType dtype, torch::Device device, std::shared_ptr<KVBufferPool> pool);
  ~KVCache();
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;

  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }
  void set_length(int64_t n);  // only ever shrinks or grows by what forward wrote

  // [num_layers, num_kv_heads, slots, head_dim], slots = capacity rounded up to a multiple of 16
  // (positions past capacity are never used). A model on the kernels stores each kv head's keys
  // in blocks of 16 positions, [slots / 16][head_dim][16] (see kernels::attention).
  torch::Tensor keys, values;
  // RoPE tables for every position of this cache, [capacity, head_dim / 2], compute dtype
  // (views of the model's shared tables).
  torch::Tensor cos, sin;

 private:
  int64_t capacity_;
  int64_t length_ = 0;
  std::shared_ptr<KVBufferPool> pool_;
  torch::Tensor key_buffer_, value_buffer_;  // flat pool buffers that keys / values view
};

}  // namespace cascade
