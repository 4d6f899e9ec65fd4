#include "sequence.h"

#include <algorithm>

namespace cascade {

namespace {
int64_t checked_capacity(const LlamaModel& m, int64_t capacity) {
  const int64_t max = m.config().max_position_embeddings;
  if (capacity < 1 || capacity > max)
    throw std::invalid_argument("context length " + std::to_string(capacity) + " must be in [1, " +
                                std::to_string(max) + "] (max_position_embeddings)");
  return capacity;
}

KVCache make_cache(const LlamaModel& m, int64_t capacity) {
  capacity = checked_capacity(m, capacity);
  auto [cos, sin] = m.rope_tables(capacity);
  return KVCache(m.config(), cos, sin, capacity, m.cache_dtype(), m.device(), m.cache_pool());
}
}  // namespace

Sequence::Sequence(std::shared_ptr<const LlamaModel> model, int64_t capacity, uint64_t seed)
    : model_(std::move(model)),
      cache_(make_cache(*model_, capacity)),
      rng_(seed) {}

void Sequence::check_tokens(const std::vector<int64_t>& tokens) const {
  if (tokens.empty()) throw std::invalid_argument("forward needs at least one token");
  const int64_t V = model_->config().vocab_size;
  for (int64_t t : tokens)
    if (t < 0 || t >= V)
      throw std::invalid_argument("token id " + std::to_string(t) + " out of range [0, " + std::to_string(V) + ")");
  if (length() + static_cast<int64_t>(tokens.size()) > capacity())
    throw std::length_error("sequence of " + std::to_string(length()) + " tokens cannot take " +
                            std::to_string(tokens.size()) + " more: context length is " + std::to_string(capacity()));
}

torch::Tensor Sequence::forward(const std::vector<int64_t>& tokens, bool all_logits) {
  check_tokens(tokens);
  c10::InferenceMode guard;
  return model_->forward(torch::tensor(tokens, torch::kInt64), cache_, all_logits).to(torch::kCPU);
}

int64_t Sequence::greedy_next(const std::vector<int64_t>& tokens, float* confidence, bool draft_vocabulary) {
  check_tokens(tokens);
  c10::InferenceMode guard;
  std::vector<float> conf;
  const int64_t t = model_->forward_packed_argmax(tokens, {&cache_}, {int64_t(tokens.size())}, /*all_rows=*/false,
                                                  confidence ? &conf : nullptr, draft_vocabulary)[0];
  if (confidence) *confidence = conf[0];
  return t;
}

int64_t Sequence::step(const std::vector<int64_t>& tokens, const SamplingParams& params) {
  params.validate();
  if (params.greedy()) return greedy_next(tokens);
  auto logits = forward(tokens, /*all_logits=*/false);
  c10::InferenceMode guard;
  return pick_token(logits[0], params, rng_);
}

std::vector<int64_t> Sequence::draft(const std::vector<int64_t>& feed, int64_t k, const SamplingParams& params,
                                     torch::Tensor* probs, float min_confidence) {
  params.validate();
  if (k < 1) throw std::invalid_argument("draft needs k >= 1");
  if (!(min_confidence >= 0.f && min_confidence < 1.f)) throw std::invalid_argument("draft needs 0 <= min_confidence < 1");
  const bool gated = min_confidence > 0.f;
  if (length() + static_cast<int64_t>(feed.size()) + k - 1 > capacity())
    throw std::length_error("draft of " + std::to_string(k) + " tokens would exceed the context length " +
                            std::to_string(capacity()));
  std::vector<int64_t> out;
  if (params.greedy()) {
    // Argmaxes only: with the kernels no logits are materialised.
    float conf = 1.f;
    int64_t t = greedy_next(feed, nullptr, /*draft_vocabulary=*/true);
    for (int64_t i = 0; i < k; ++i) {
      out.push_back(t);
      if (i + 1 < k) {
        t = greedy_next({t}, gated ? &conf : nullptr, /*draft_vocabulary=*/true);
        if (conf < min_confidence) {
          cache_.set_length(length() - 1);  // the last proposal leaves the cache again
          break;
        }
      }
    }
    if (probs) *probs = torch::Tensor();
    return out;
  }
  // Sampled: each proposal is drawn from the processed distribution over the draft vocabulary
  // (zero outside it), and that distribution is the q handed to the verifier, so the target's
  // test stays exact. Processing the draft vocabulary's logits alone gives the same distribution
  // as processing every token's with the others at -inf, and the draw the same token.
  check_tokens(feed);
  const int64_t V = model_->config().vocab_size;
  const auto& ids = model_->draft_vocabulary();
  c10::InferenceMode guard;
  const int64_t Vd = ids.empty() ? V : int64_t(ids.size());
  thread_local std::vector<float> logits, p;
  logits.resize(size_t(Vd));
  p.resize(size_t(Vd));
  model_->forward_draft_logits(feed, cache_, logits.data());
  draft_q_.resize(size_t(k * V));
  std::vector<int64_t> next(1);
  int64_t rows = 0;
  for (int64_t i = 0; i < k; ++i) {
    processed_probs(logits.data(), Vd, params, p.data());
    // The stop is decided from q alone, before the draw: where q's most likely token is below
    // the threshold. A stop that looked at the drawn token (its q) would propose only the
    // confident draws, a proposal distribution other than the q the verifier divides by, and
    // the token at a stop position would no longer follow the target.
    if (i > 0 && gated && *std::max_element(p.begin(), p.end()) < min_confidence) {
      cache_.set_length(length() - 1);  // the last proposal leaves the cache again
      break;
    }
    const int64_t j = sample_from(p.data(), Vd, rng_);
    const int64_t t = ids.empty() ? j : ids[size_t(j)];
    float* row = draft_q_.data() + i * V;
    if (ids.empty()) std::copy(p.begin(), p.end(), row);
    else {
      std::fill(row, row + V, 0.f);
      for (int64_t c = 0; c < Vd; ++c) row[ids[size_t(c)]] = p[size_t(c)];
    }
    out.push_back(t);
    ++rows;
    if (i + 1 < k) {
      next[0] = t;
      model_->forward_draft_logits(next, cache_, logits.data());
    }
  }
  if (probs) *probs = rows ? torch::from_blob(draft_q_.data(), {rows, V}, torch::kFloat32) : torch::Tensor();
  return out;
}

void Sequence::truncate(int64_t n) {
  if (n < 0 || n > length())
    throw std::out_of_range("cannot truncate a sequence of " + std::to_string(length()) + " tokens to " +
                            std::to_string(n));
  cache_.set_length(n);
}

}  // namespace cascade
