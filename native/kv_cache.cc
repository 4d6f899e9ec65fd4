#include "kv_cache.h"

namespace cascade {

torch::Tensor KVBufferPool::acquire(int64_t numel, const torch::TensorOptions& options) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t best = kept_.size();
    for (size_t i = 0; i < kept_.size(); ++i) {
      const auto& t = kept_[i];
      if (t.numel() >= numel && t.numel() <= 2 * numel && t.dtype() == options.dtype() && t.device() == options.device() &&
          (best == kept_.size() || t.numel() < kept_[best].numel()))
        best = i;
    }
    if (best < kept_.size()) {
      torch::Tensor t = std::move(kept_[best]);
      kept_.erase(kept_.begin() + static_cast<std::ptrdiff_t>(best));
      return t;
    }
  }
  return torch::empty({numel}, options);
}

void KVBufferPool::release(torch::Tensor buffer) {
  if (!buffer.defined() || buffer.use_count() != 1 || buffer.storage().use_count() != 1) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (kept_.size() < kMaxKept) kept_.push_back(std::move(buffer));
}

KVCache::KVCache(const ModelConfig& cfg, const torch::Tensor& cos_table, const torch::Tensor& sin_table,
                 int64_t capacity, torch::ScalarType dtype, torch::Device device,
                 std::shared_ptr<KVBufferPool> pool)
    : capacity_(capacity), pool_(std::move(pool)) {
  if (cos_table.size(0) < capacity || sin_table.size(0) < capacity)
    throw std::logic_error("KVCache: RoPE tables shorter than the capacity");
  auto opts = torch::TensorOptions().dtype(dtype).device(device);
  const std::vector<int64_t> shape{cfg.num_layers, cfg.num_kv_heads, (capacity + 15) / 16 * 16, cfg.head_dim};
  const int64_t numel = shape[0] * shape[1] * shape[2] * shape[3];
  key_buffer_ = pool_->acquire(numel, opts);
  value_buffer_ = pool_->acquire(numel, opts);
  // Zeroed: a pass may read (and discard) the unwritten positions of a 16-position key block.
  keys = key_buffer_.narrow(0, 0, numel).view(shape).zero_();
  values = value_buffer_.narrow(0, 0, numel).view(shape).zero_();
  cos = cos_table.narrow(0, 0, capacity);
  sin = sin_table.narrow(0, 0, capacity);
}

KVCache::~KVCache() {
  // The views first, so that a buffer nobody else holds goes back (a caller may keep a view).
  keys = torch::Tensor();
  values = torch::Tensor();
  pool_->release(std::move(key_buffer_));
  pool_->release(std::move(value_buffer_));
}

void KVCache::set_length(int64_t n) {
  if (n < 0 || n > capacity_)
    throw std::out_of_range("cache length " + std::to_string(n) + " outside [0, " +
                            std::to_string(capacity_) + "]");
  length_ = n;
}

}  // namespace cascade
