#include "verify.h"

#include <algorithm>
#include <stdexcept>

#include "kernels/kernels.h"

namespace cascade {

namespace {

// The test itself; p_row(i) computes row i's distribution, called at most once per row and in
// order of rows.
template <typename PRow>
VerifyResult decide(const float* logits, int64_t V, const std::vector<int64_t>& drafts, const float* draft_probs,
                    const SamplingParams& params, double lenience, Rng& rng, PRow&& p_row) {
  const int64_t k = static_cast<int64_t>(drafts.size());
  const bool have_q = draft_probs != nullptr;
  VerifyResult r;
  auto q_at = [&](int64_t i, int64_t x) -> double { return have_q ? draft_probs[i * V + x] : 1.0; };

  int64_t n = 0;
  const float* p = nullptr;  // p_row(n) once computed
  for (; n < k; ++n) {
    const int64_t x = drafts[size_t(n)];
    p = params.greedy() && lenience <= 1 ? nullptr : p_row(n);
    bool accept;
    if (lenience > 1) {
      // Lenient review (draft levels only): the argmax, or a token the reviewer finds at
      // least 1/lenience as likely as the drafter did.
      accept = argmax_index(logits + n * V, V) == x || p[x] >= q_at(n, x) / lenience;
    } else if (params.greedy()) {
      accept = argmax_index(logits + n * V, V) == x;
    } else {
      // Speculative sampling: accept with min(1, p/q); a one-hot q gives probability p(x).
      const double qx = q_at(n, x);
      accept = qx > 0 && rng.uniform() < std::min(1.0, double(p[x]) / qx);
    }
    if (!accept) break;
    p = nullptr;
  }
  r.accepted = n;
  if (params.greedy()) {
    r.next = argmax_index(logits + n * V, V);
    return r;
  }
  if (!p) p = p_row(n);
  if (n == k || lenience > 1) {
    r.next = sample_from(p, V, rng);  // bonus token (or a draft-level correction)
    return r;
  }
  // Rejected: sample from the residual norm(max(0, p - q)); with a one-hot q that is p without
  // the rejected token.
  thread_local std::vector<float> residual;
  residual.resize(size_t(V));
  if (have_q)
    for (int64_t i = 0; i < V; ++i) residual[size_t(i)] = std::max(0.f, p[i] - draft_probs[n * V + i]);
  else {
    std::copy(p, p + V, residual.begin());
    residual[size_t(drafts[size_t(n)])] = 0;
  }
  const double mass = sum_double(residual.data(), V);
  // No residual mass left means p == q at this row, which cannot reject; guard rounding.
  r.next = mass > 0 ? sample_from(residual.data(), V, rng, mass) : sample_from(p, V, rng);
  return r;
}

}  // namespace

VerifyResult accept_drafts(const float* logits, int64_t V, const std::vector<int64_t>& drafts, const float* draft_probs,
                           const SamplingParams& params, double lenience, Rng& rng, float* rows_out) {
  const int64_t k = static_cast<int64_t>(drafts.size());
  // The verifier's distribution per row: the processed one when sampling, the plain softmax
  // for a lenient greedy review; strict greedy review needs only argmaxes. Rows are computed as
  // the test reaches them: the ones after a rejection are never needed. With rows_out they are
  // computed there, and the test's rows are the ones handed back.
  thread_local std::vector<float> prows;
  float* base = rows_out;
  if (!base) {
    prows.resize(size_t((k + 1) * V));
    base = prows.data();
  }
  int64_t computed = 0;
  auto p_row = [&](int64_t i) -> const float* {
    float* row = base + i * V;
    if (params.greedy()) kernels::softmax(logits + i * V, V, 1.f, row);
    else processed_probs(logits + i * V, V, params, row);
    computed = i + 1;
    return row;
  };
  VerifyResult r = decide(logits, V, drafts, draft_probs, params, lenience, rng, p_row);
  // Every row up to the one `next` came from, for a caller that takes the distributions of
  // the tokens this verification produced.
  if (rows_out)
    for (int64_t i = computed; i <= r.accepted; ++i) p_row(i);
  return r;
}

std::vector<VerifyResult> verify(std::vector<VerifyRequest>& requests) {
  if (requests.empty()) return {};
  const LlamaModel& model = requests[0].seq->model();
  const int64_t V = model.config().vocab_size;
  std::vector<int64_t> tokens;
  std::vector<KVCache*> caches;
  std::vector<int64_t> lengths, starts;
  for (auto& r : requests) {
    if (&r.seq->model() != &model) throw std::invalid_argument("verify: all sequences must belong to the same model");
    if (r.fixed < 1 || r.fixed > static_cast<int64_t>(r.block.size()))
      throw std::invalid_argument("verify: fixed must be in [1, block length]: the block starts with the pending token");
    for (size_t j = 0; j < requests.size(); ++j)
      if (&r != &requests[j] && r.seq == requests[j].seq) throw std::invalid_argument("verify: a sequence appears twice in one batch");
    const int64_t k = static_cast<int64_t>(r.block.size()) - r.fixed;
    if (r.draft_probs.defined() && (r.draft_probs.dim() != 2 || r.draft_probs.size(0) != k || r.draft_probs.size(1) != V))
      throw std::invalid_argument("verify: draft probabilities must be [k, vocab] = [" + std::to_string(k) + ", " +
                                  std::to_string(V) + "]");
    if (!(r.lenience >= 1)) throw std::invalid_argument("verify: lenience must be >= 1");
    r.params.validate();
    r.seq->check_append(r.block);
    tokens.insert(tokens.end(), r.block.begin(), r.block.end());
    caches.push_back(&r.seq->cache());
    lengths.push_back(static_cast<int64_t>(r.block.size()));
    starts.push_back(r.seq->length());
  }
  // Strict greedy review everywhere needs only each row's argmax: the forward returns those
  // without materialising the logits (with the kernels), and acceptance is a comparison.
  bool argmax_only = true;
  for (const auto& r : requests) argmax_only = argmax_only && r.params.greedy() && r.lenience == 1 && !r.return_probs;
  // Block row fixed-1+i predicts the token after block[fixed-1+i]; the drafts start at fixed.
  // So only the last k+1 rows of each block need logits: a block of many fixed tokens (a
  // prompt with its first draft, a cascade level catching up) skips the others' output work.
  std::vector<int64_t> outputs;
  for (size_t s = 0; s < requests.size(); ++s) outputs.push_back(lengths[s] - requests[s].fixed + 1);
  std::vector<VerifyResult> results;
  if (argmax_only) {
    std::vector<int64_t> best;
    {
      c10::InferenceMode guard;
      best = model.forward_packed_argmax(tokens, caches, lengths, outputs);
    }
    int64_t first = 0;  // the sequence's first output row
    for (size_t s = 0; s < requests.size(); ++s) {
      auto& r = requests[s];
      const int64_t k = outputs[s] - 1;
      VerifyResult res;
      while (res.accepted < k && best[size_t(first + res.accepted)] == r.block[size_t(r.fixed + res.accepted)]) ++res.accepted;
      res.next = best[size_t(first + res.accepted)];
      r.seq->truncate(starts[s] + r.fixed + res.accepted);
      results.push_back(std::move(res));
      first += outputs[s];
    }
    return results;
  }
  // The logits live in a buffer kept between passes (see forward_logits_into).
  thread_local std::vector<float> logits;
  {
    int64_t rows = 0;
    for (const int64_t o : outputs) rows += o;
    logits.resize(size_t(rows * V));
    c10::InferenceMode guard;
    model.forward_logits_into(tokens, caches, lengths, outputs, logits.data());
  }
  int64_t first = 0;
  for (size_t s = 0; s < requests.size(); ++s) {
    auto& r = requests[s];
    c10::InferenceMode guard;
    const float* rows = logits.data() + first * V;
    std::vector<int64_t> drafts(r.block.begin() + r.fixed, r.block.end());
    torch::Tensor q = r.draft_probs.defined() ? r.draft_probs.to(torch::kCPU).to(torch::kFloat32).contiguous() : torch::Tensor();
    torch::Tensor all_rows = r.return_probs ? torch::empty({outputs[s], V}, torch::kFloat32) : torch::Tensor();
    VerifyResult res = accept_drafts(rows, V, drafts, q.defined() ? q.data_ptr<float>() : nullptr, r.params, r.lenience,
                                     r.seq->rng(), all_rows.defined() ? all_rows.data_ptr<float>() : nullptr);
    if (r.return_probs) res.probs = all_rows.narrow(0, 0, res.accepted + 1);
    // Keep the fixed tokens and the accepted drafts; the rest of the block rolls back.
    r.seq->truncate(starts[s] + r.fixed + res.accepted);
    results.push_back(std::move(res));
    first += outputs[s];
  }
  return results;
}

}  // namespace cascade
