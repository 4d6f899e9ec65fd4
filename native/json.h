// A minimal JSON reader for the one JSON document native code must read itself: the
// safetensors header. (config.json is parsed and validated in TypeScript.)
#pragma once
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace cascade {

struct JsonValue {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  double number = 0;
  std::string text;
  std::vector<JsonValue> items;
  // Keys in document order; duplicate keys are rejected by the parser.
  std::vector<std::pair<std::string, JsonValue>> members;

  const JsonValue* find(const std::string& key) const;
};

// Throws std::runtime_error("... at byte N") on malformed input.
JsonValue parse_json(const char* data, size_t size);

}  // namespace cascade
