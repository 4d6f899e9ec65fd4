#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "json.h"

namespace cascade {

namespace {

// Bytes per element of every dtype the safetensors format defines; anything else is refused.
int64_t dtype_size(const std::string& dtype) {
  static const std::map<std::string, int64_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
      {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8},
      {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? -1 : it->second;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  auto fail = [&](const std::string& what) -> void { throw std::runtime_error(path_ + ": " + what); };
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(std::string("cannot open: ") + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) { ::close(fd); fail("cannot stat"); }
  map_size_ = static_cast<size_t>(st.st_size);
  if (map_size_ < 8) { ::close(fd); fail("file is too short to be safetensors (" + std::to_string(map_size_) + " bytes)"); }
  void* m = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) fail(std::string("cannot mmap: ") + std::strerror(errno));
  map_ = static_cast<const uint8_t*>(m);

  try {
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | map_[i];  // little-endian u64
    if (header_len > map_size_ - 8)
      fail("header length " + std::to_string(header_len) + " runs past the end of the file (" +
           std::to_string(map_size_) + " bytes)");
    data_ = map_ + 8 + header_len;
    const uint64_t data_size = map_size_ - 8 - header_len;

    JsonValue header;
    try {
      header = parse_json(reinterpret_cast<const char*>(map_ + 8), header_len);
    } catch (const std::exception& e) {
      fail(std::string("invalid header: ") + e.what());
    }
    if (header.kind != JsonValue::Kind::Object) fail("invalid header: not a JSON object");

    std::vector<std::pair<uint64_t, std::string>> ranges;
    for (const auto& [name, v] : header.members) {
      if (name == "__metadata__") continue;
      const std::string where = "tensor \"" + name + "\": ";
      if (v.kind != JsonValue::Kind::Object) fail(where + "entry is not an object");
      const JsonValue* dt = v.find("dtype");
      const JsonValue* shape = v.find("shape");
      const JsonValue* offsets = v.find("data_offsets");
      if (!dt || dt->kind != JsonValue::Kind::String) fail(where + "missing dtype");
      if (!shape || shape->kind != JsonValue::Kind::Array) fail(where + "missing shape");
      if (!offsets || offsets->kind != JsonValue::Kind::Array || offsets->items.size() != 2)
        fail(where + "data_offsets must be [begin, end]");
      TensorEntry t;
      t.dtype = dt->text;
      const int64_t esize = dtype_size(t.dtype);
      if (esize < 0) fail(where + "unknown dtype \"" + t.dtype + "\"");
      int64_t numel = 1;
      for (const auto& d : shape->items) {
        if (d.kind != JsonValue::Kind::Number || d.number < 0 || d.number != (double)(int64_t)d.number ||
            d.number > 1e12)
          fail(where + "invalid shape");
        t.shape.push_back(static_cast<int64_t>(d.number));
        // A product that overflows, or outgrows the data section, cannot describe real bytes.
        if (__builtin_mul_overflow(numel, t.shape.back(), &numel) || uint64_t(numel) > data_size)
          fail(where + "shape " + [&] {
            std::string out;
            for (auto x : shape->items) out += (out.empty() ? "[" : ", ") + std::to_string(int64_t(x.number));
            return out + "]";
          }() + " is larger than the data section (" + std::to_string(data_size) + " bytes)");
      }
      for (const auto& o : offsets->items)
        if (o.kind != JsonValue::Kind::Number || o.number < 0 || o.number != (double)(uint64_t)o.number)
          fail(where + "invalid data_offsets");
      t.begin = static_cast<uint64_t>(offsets->items[0].number);
      t.end = static_cast<uint64_t>(offsets->items[1].number);
      if (t.end < t.begin) fail(where + "data_offsets end before begin");
      if (t.end > data_size)
        fail(where + "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
             "] out of bounds: the data section holds " + std::to_string(data_size) + " bytes");
      if (static_cast<uint64_t>(numel) * uint64_t(esize) != t.end - t.begin)
        fail(where + "byte size " + std::to_string(t.end - t.begin) + " does not match shape and dtype (" +
             std::to_string(numel * esize) + " bytes expected)");
      ranges.emplace_back(t.begin, name);
      tensors_.emplace(name, std::move(t));
    }
    // Overlapping tensors would alias each other's bytes: a corrupt or hostile file.
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i) {
      const auto& prev = tensors_.at(ranges[i - 1].second);
      const auto& cur = tensors_.at(ranges[i].second);
      if (cur.begin < prev.end && cur.end > cur.begin && prev.end > prev.begin)
        fail("tensors \"" + ranges[i - 1].second + "\" and \"" + ranges[i].second + "\" overlap");
    }
  } catch (...) {
    ::munmap(const_cast<uint8_t*>(map_), map_size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
}

torch::Tensor SafetensorsFile::load(const std::string& name, torch::ScalarType dtype) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw std::runtime_error(path_ + ": missing tensor \"" + name + "\"");
  const TensorEntry& t = it->second;
  torch::ScalarType stored;
  if (t.dtype == "F32") stored = torch::kFloat32;
  else if (t.dtype == "F16") stored = torch::kFloat16;
  else if (t.dtype == "BF16") stored = torch::kBFloat16;
  else if (t.dtype == "F64") stored = torch::kFloat64;
  else
    throw std::runtime_error(path_ + ": tensor \"" + name + "\" has dtype " + t.dtype +
                             "; weights must be F32, F16, BF16 or F64");
  // Copy through an aligned buffer: data offsets need not be aligned for the element type.
  auto raw = torch::empty({static_cast<int64_t>(t.end - t.begin)}, torch::kUInt8);
  if (t.end > t.begin) std::memcpy(raw.data_ptr<uint8_t>(), data_ + t.begin, t.end - t.begin);
  return raw.view(stored).reshape(t.shape).to(dtype).contiguous();
}

}  // namespace cascade

namespace cascade {

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::string& dtype) {
  torch::ScalarType st;
  if (dtype == "F32") st = torch::kFloat32;
  else if (dtype == "F16") st = torch::kFloat16;
  else if (dtype == "BF16") st = torch::kBFloat16;
  else throw std::invalid_argument("cannot write dtype " + dtype + " (F32, F16 or BF16)");
  std::vector<torch::Tensor> data;
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    auto c = t.detach().to(torch::kCPU).to(st).contiguous();
    const uint64_t bytes = c.numel() * c.element_size();
    header += ",\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":[";
    for (int64_t d = 0; d < c.dim(); ++d) header += (d ? "," : "") + std::to_string(c.size(d));
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
    data.push_back(c);
  }
  header += "}";
  while ((8 + header.size()) % 8) header += ' ';  // keeps the data section 8-byte aligned
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw std::runtime_error(tmp + ": cannot open for writing: " + std::strerror(errno));
  uint8_t len[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(header.data(), 1, header.size(), f) == header.size();
  for (const auto& c : data)
    ok = ok && std::fwrite(c.data_ptr(), 1, c.numel() * c.element_size(), f) == size_t(c.numel() * c.element_size());
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error(path + ": write failed: " + std::strerror(errno));
  }
}

}  // namespace cascade
