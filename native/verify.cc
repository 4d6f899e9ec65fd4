#include "verify.h"

#include <algorithm>
#include <stdexcept>

#include "kernels/kernels.h"

namespace cascade {

namespace {

// A draw from norm(max(0, w p - q)): the correction after a rejection (w = 1 token by token,
// w_tau jointly). q is the drafter's row, or one-hot at `drafted` when null, where
// w p(drafted) <= 1 leaves that token nothing. No mass left (p == q up to rounding, which cannot
// reject): a draw from p.
int64_t draw_residual(const float* p, double w, const float* q, int64_t drafted, int64_t V, Rng& rng) {
  thread_local std::vector<float> residual;
  residual.resize(size_t(V));
  double mass = kernels::residual_mass(p, float(w), q, V, residual.data());
  if (!q) {
    mass -= residual[size_t(drafted)];
    residual[size_t(drafted)] = 0;
  }
  return mass > 0 ? sample_from(residual.data(), V, rng, mass) : sample_from(p, V, rng);
}

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
  r.next = draw_residual(p, 1.0, have_q ? draft_probs + n * V : nullptr, drafts[size_t(n)], V, rng);
  return r;
}

// Block verification (Sun et al., "Block Verification Accelerates Speculative Decoding", 2024):
// the drafts are tested jointly instead of token by token. With w_0 = 1 and, for i = 1..k,
//   w_i = min(1, w_{i-1} p_{i-1}(x_i) / q_{i-1}(x_i))       (p_j, q_j: row j, the distribution of x_{j+1})
//   h_i = r_i / (r_i + 1 - w_i), r_i = sum_x max(0, w_i p_i(x) - q_i(x))   for i < k;  h_k = w_k,
// it keeps the drafts up to tau = the last i with u_i <= h_i (u_i independent uniforms; 0 when
// none) and draws the next token from p_k when tau = k, else from norm(max(0, w_tau p_tau - q_tau)).
// Its output, continued by sampling the verifier, follows the verifier's distribution, as the
// token-by-token test's does, and it emits at least as many tokens per pass in expectation
// (more when drafts are often rejected: +4% tokens per pass for the default family at T 0.8 /
// top-p 0.95, +7% at T 1). It needs every row's distribution, where the token-by-token test
// stops at the first rejection; a row after a draft the verifier gives no mass (w_i = 0)
// cannot be kept, and is not computed. test/block-verification.test.ts checks the rule by
// exact enumeration; test/speculative-sampling.test.ts this code against it by frequencies.
template <typename PRow>
VerifyResult decide_block(const int64_t V, const std::vector<int64_t>& drafts, const float* draft_probs, Rng& rng,
                          PRow&& p_row) {
  const int64_t k = static_cast<int64_t>(drafts.size());
  const bool have_q = draft_probs != nullptr;
  // A one-hot q (deterministic drafts) is the row of its draft token.
  auto q_at = [&](int64_t row, int64_t x) -> double {
    return have_q ? draft_probs[row * V + x] : (x == drafts[size_t(row)] ? 1.0 : 0.0);
  };
  thread_local std::vector<double> w, h;
  w.assign(size_t(k + 1), 0.0);
  h.assign(size_t(k + 1), 0.0);
  w[0] = 1;
  int64_t reach = 0;  // the last i with w_i > 0: no later draft can be kept
  for (int64_t i = 1; i <= k; ++i) {
    const int64_t x = drafts[size_t(i - 1)];
    const double qx = q_at(i - 1, x);
    const float* p = p_row(i - 1);
    w[size_t(i)] = qx > 0 ? std::min(1.0, w[size_t(i - 1)] * double(p[x]) / qx) : 0.0;
    if (!(w[size_t(i)] > 0)) break;
    reach = i;
    if (i == k) {
      h[size_t(i)] = w[size_t(i)];
      break;
    }
    const float* pi = p_row(i);
    const double wi = w[size_t(i)];
    // One-hot q at drafts[i]: w_i p_i(x) <= 1, so only that token's term loses its mass.
    const double r = have_q ? kernels::residual_mass(pi, float(wi), draft_probs + i * V, V, nullptr)
                            : wi * (1.0 - double(pi[drafts[size_t(i)]]));
    // r = 0: p_i's mass at w_i lies within q_i, nothing to draw from at i: never stop there.
    h[size_t(i)] = r > 0 ? r / (r + 1.0 - wi) : 0.0;
  }
  VerifyResult res;
  int64_t tau = 0;
  for (int64_t i = reach; i >= 1; --i)
    if (rng.uniform() <= h[size_t(i)]) {
      tau = i;
      break;
    }
  res.accepted = tau;
  const float* p = p_row(tau);  // computed above unless tau = k (the bonus row)
  if (tau == k) {
    res.next = sample_from(p, V, rng);
    return res;
  }
  // No residual mass would mean h_tau = 0, which cannot be drawn: draw_residual guards rounding.
  res.next = draw_residual(p, w[size_t(tau)], have_q ? draft_probs + tau * V : nullptr, drafts[size_t(tau)], V, rng);
  return res;
}

}  // namespace

VerifyResult accept_drafts(const float* logits, int64_t V, const std::vector<int64_t>& drafts, const float* draft_probs,
                           const SamplingParams& params, double lenience, Rng& rng, float* rows_out, bool block) {
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
    if (i < computed) return row;  // the block test asks for a row again
    if (params.greedy()) kernels::softmax(logits + i * V, V, 1.f, row);
    else processed_probs(logits + i * V, V, params, row);
    computed = i + 1;
    return row;
  };
  const bool joint = block && !params.greedy() && lenience <= 1 && k > 0;
  VerifyResult r = joint ? decide_block(V, drafts, draft_probs, rng, p_row)
                         : decide(logits, V, drafts, draft_probs, params, lenience, rng, p_row);
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
                                     r.seq->rng(), all_rows.defined() ? all_rows.data_ptr<float>() : nullptr, r.joint);
    if (r.return_probs) res.probs = all_rows.narrow(0, 0, res.accepted + 1);
    // Keep the fixed tokens and the accepted drafts; the rest of the block rolls back.
    r.seq->truncate(starts[s] + r.fixed + res.accepted);
    results.push_back(std::move(res));
    first += outputs[s];
  }
  return results;
}

}  // namespace cascade
