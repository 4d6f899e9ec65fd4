// The fused verification step: the verifier's forward over a block of draft tokens, the
// acceptance rule, and the KV-cache rollback to the accepted prefix, in one call. Several
// sequences of one model are verified in one packed forward (ragged blocks).
#pragma once
#include <torch/torch.h>

#include <vector>

#include "sampling.h"
#include "sequence.h"

namespace cascade {

struct VerifyRequest {
  Sequence* seq = nullptr;
  // block[0..fixed) are known tokens not yet in the cache (at least the pending token: emitted
  // but not yet forwarded); block[fixed..] are the k drafts under test.
  std::vector<int64_t> block;
  int64_t fixed = 1;
  // [k, V]: the drafter's processed distribution at each draft position, or undefined when the
  // drafts are deterministic (one-hot q: Max-Gram, a greedy drafter, a cascade's output).
  torch::Tensor draft_probs;
  SamplingParams params;
  // 1: the exact test. > 1: a draft-level reviewer's lenient test (accept when the argmax
  // matches or p(x) >= q(x) / lenience); never used at the top level.
  double lenience = 1;
  // Sampling with the exact test: verify the drafts jointly (block verification, Sun et al.
  // 2024), which emits at least as many tokens per pass in expectation as the test token by
  // token, with the same output distribution. false: the classic test, token by token.
  bool joint = true;
  // Return the verifier's processed distributions at the rows of the tokens it produced: the
  // accepted drafts and `next` (accepted + 1 rows; the test's own rows, computed once).
  bool return_probs = false;
};

struct VerifyResult {
  int64_t accepted = 0;  // drafts accepted, 0..k
  int64_t next = 0;      // the correction (after a rejection) or bonus token (all accepted)
  torch::Tensor probs;   // [accepted + 1, V] float32 when return_probs
};

// All requests must be on sequences of the same model. On return each sequence's cache holds
// its prefix + the fixed tokens + the accepted drafts; `next` is the new pending token.
std::vector<VerifyResult> verify(std::vector<VerifyRequest>& requests);

// The acceptance rule alone, on the verifier's float32 logits [k + 1, V]. draft_probs: [k, V],
// or null for deterministic drafts. rows_out: null, or room for [k + 1, V]; it receives the
// verifier's distributions at rows 0..accepted.
// block: the joint test when sampling strictly (VerifyRequest::joint).
VerifyResult accept_drafts(const float* logits, int64_t V, const std::vector<int64_t>& drafts, const float* draft_probs,
                           const SamplingParams& params, double lenience, Rng& rng, float* rows_out = nullptr,
                           bool block = false);

}  // namespace cascade
