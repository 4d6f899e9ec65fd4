// Safetensors reading: the file is memory-mapped, its header validated in full before any
// tensor is touched, and tensors are copied out converted to the requested dtype.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace cascade {

struct TensorEntry {
  std::string dtype;           // as spelled in the header: "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0; // byte range inside the data section
};

class SafetensorsFile {
 public:
  // Throws std::runtime_error naming `path` and the problem.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorEntry>& tensors() const { return tensors_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // A copy of the tensor in `dtype` (float storage only: F32, F16, BF16, F64).
  torch::Tensor load(const std::string& name, torch::ScalarType dtype) const;

 private:
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::map<std::string, TensorEntry> tensors_;
};

}  // namespace cascade

namespace cascade {
// Writes tensors (in order) as a safetensors file, converted to `dtype` ("F32", "F16", "BF16").
// Writes to a temporary file and renames, so a crash never leaves a half-written checkpoint.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::string& dtype);
}  // namespace cascade
