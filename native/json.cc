#include "json.h"

#include <cstdlib>
#include <set>

namespace cascade {

const JsonValue* JsonValue::find(const std::string& key) const {
  for (const auto& m : members)
    if (m.first == key) return &m.second;
  return nullptr;
}

namespace {

class Parser {
 public:
  Parser(const char* data, size_t size) : p_(data), begin_(data), end_(data + size) {}

  JsonValue document() {
    JsonValue v = value(0);
    skip_ws();
    if (p_ != end_) fail("unexpected trailing characters");
    return v;
  }

 private:
  const char* p_;
  const char* begin_;
  const char* end_;

  [[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error("malformed JSON: " + what + " at byte " + std::to_string(p_ - begin_));
  }
  void skip_ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  bool consume(char c) {
    skip_ws();
    if (p_ < end_ && *p_ == c) { ++p_; return true; }
    return false;
  }
  void expect(char c) {
    if (!consume(c)) fail(std::string("expected '") + c + "'");
  }
  void literal(const char* word) {
    for (const char* w = word; *w; ++w, ++p_)
      if (p_ >= end_ || *p_ != *w) fail("invalid literal");
  }

  JsonValue value(int depth) {
    if (depth > 64) fail("nesting too deep");
    skip_ws();
    if (p_ >= end_) fail("unexpected end of input");
    JsonValue v;
    switch (*p_) {
      case '{': {
        ++p_;
        v.kind = JsonValue::Kind::Object;
        std::set<std::string> seen;
        if (consume('}')) return v;
        do {
          skip_ws();
          if (p_ >= end_ || *p_ != '"') fail("expected a string key");
          std::string key = string();
          if (!seen.insert(key).second) fail("duplicate key \"" + key + "\"");
          expect(':');
          v.members.emplace_back(std::move(key), value(depth + 1));
        } while (consume(','));
        expect('}');
        return v;
      }
      case '[': {
        ++p_;
        v.kind = JsonValue::Kind::Array;
        if (consume(']')) return v;
        do v.items.push_back(value(depth + 1));
        while (consume(','));
        expect(']');
        return v;
      }
      case '"':
        v.kind = JsonValue::Kind::String;
        v.text = string();
        return v;
      case 't': literal("true"); v.kind = JsonValue::Kind::Bool; v.boolean = true; return v;
      case 'f': literal("false"); v.kind = JsonValue::Kind::Bool; return v;
      case 'n': literal("null"); return v;
      default: {
        const char* start = p_;
        while (p_ < end_ && (isdigit((unsigned char)*p_) || *p_ == '-' || *p_ == '+' || *p_ == '.' || *p_ == 'e' || *p_ == 'E')) ++p_;
        if (start == p_) fail("unexpected character");
        std::string digits(start, p_);
        char* stop = nullptr;
        v.number = std::strtod(digits.c_str(), &stop);
        if (stop != digits.c_str() + digits.size()) fail("invalid number");
        v.kind = JsonValue::Kind::Number;
        return v;
      }
    }
  }

  static void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) out += char(cp);
    else if (cp < 0x800) { out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) { out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F)); }
    else { out += char(0xF0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 0x3F)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F)); }
  }
  unsigned hex4() {
    if (end_ - p_ < 4) fail("truncated \\u escape");
    unsigned cp = 0;
    for (int i = 0; i < 4; ++i, ++p_) {
      char c = *p_;
      cp <<= 4;
      if (c >= '0' && c <= '9') cp |= c - '0';
      else if (c >= 'a' && c <= 'f') cp |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') cp |= c - 'A' + 10;
      else fail("invalid \\u escape");
    }
    return cp;
  }
  std::string string() {
    ++p_;  // opening quote
    std::string out;
    while (true) {
      if (p_ >= end_) fail("unterminated string");
      char c = *p_++;
      if (c == '"') return out;
      if (c != '\\') { out += c; continue; }
      if (p_ >= end_) fail("unterminated escape");
      char e = *p_++;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && end_ - p_ >= 6 && p_[0] == '\\' && p_[1] == 'u') {
            p_ += 2;
            unsigned lo = hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          put_utf8(out, cp);
          break;
        }
        default: fail("invalid escape");
      }
    }
  }
};

}  // namespace

JsonValue parse_json(const char* data, size_t size) { return Parser(data, size).document(); }

}  // namespace cascade
