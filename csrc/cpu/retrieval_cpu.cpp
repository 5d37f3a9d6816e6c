// CPU kernel of the retrieval statistics behind pyhash.metrics: per-query histograms of
// (all, relevant) database items per Hamming distance, and the sum of precisions at the ranks of
// the relevant items when ties are broken by database position. Distances take nbits + 1
// values, so no per-query sort of the database is needed: one scan in position order per query.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "cpu/popcount.h"
#include "cpu/word_layout.h"
#include "hamming_common.h"
#include "retrieval_common.h"

namespace pyhash {
namespace {

constexpr int64_t kBlock = 1024;
constexpr uint64_t kRankMask = (uint64_t(1) << 48) - 1;

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> hamming_retrieval_stats_cpu(
    const at::Tensor& queries, const at::Tensor& database, const at::Tensor& query_labels,
    const at::Tensor& database_labels, int64_t topk) {
  check_retrieval_inputs(queries, database, query_labels, database_labels, topk);
  const int64_t nq = queries.size(0), nd = database.size(0), nbits = queries.size(1) * 8;
  const int64_t bins = nbits + 1;
  const auto long_opts = queries.options().dtype(at::kLong);
  at::Tensor total = at::zeros({nq, bins}, long_opts);
  at::Tensor relevant = at::zeros({nq, bins}, long_opts);
  at::Tensor precision_sum = at::zeros({nq}, queries.options().dtype(at::kDouble));
  at::Tensor hits = at::zeros({nq}, long_opts);
  if (nq == 0 || nd == 0) return {total, relevant, precision_sum, hits};

  const at::Tensor qw = as_word_rows(queries), dw = as_word_rows(database);
  const int64_t nwords = qw.size(1) / 8;
  const auto* q = reinterpret_cast<const uint64_t*>(qw.data_ptr<uint8_t>());
  const auto* d = reinterpret_cast<const uint64_t*>(dw.data_ptr<uint8_t>());
  // The whole database word-major, once: block b holds codes [b * kBlock, ...).
  const int64_t nblocks = (nd + kBlock - 1) / kBlock;
  std::vector<uint64_t> transposed(nblocks * nwords * kBlock, 0);
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      cpu::to_word_major(d + b * kBlock * nwords, std::min(kBlock, nd - b * kBlock), nwords,
                         transposed.data() + b * nwords * kBlock, kBlock);
  });
  const LabelView ql(query_labels), dl(database_labels);
  const cpu::BlockDistanceFn distances = cpu::block_distance_fn(cpu::active_isa(), nwords);
  int64_t* tot = total.data_ptr<int64_t>();
  int64_t* rel = relevant.data_ptr<int64_t>();
  double* psum = precision_sum.data_ptr<double>();
  int64_t* hit_count = hits.data_ptr<int64_t>();

  // One pass in position order per query. A running count per distance gives each relevant
  // item its rank among the items at its distance (ties broken by position); the ranks below
  // its distance are only known once the pass is done, so they are added afterwards.
  auto per_query = [&](auto is_relevant) {
    at::parallel_for(0, nq, 1, [&](int64_t qb, int64_t qe) {
      std::vector<uint64_t> out(kBlock);
      // (distance << 48) | rank within the distance, of each relevant item in position order.
      // Every item's key is written at slot nrel and kept only for a hit, so a block needs room
      // for all of its items beyond the hits so far.
      std::vector<uint64_t> found_keys;
      std::vector<int64_t> seen(bins), seen_rel(bins), before_total(bins), before_rel(bins);
      for (int64_t qi = qb; qi < qe; ++qi) {
        std::fill(seen.begin(), seen.end(), 0);
        int64_t nrel = 0;
        for (int64_t b = 0; b < nblocks; ++b) {
          const int64_t count = std::min(kBlock, nd - b * kBlock);
          distances(q + qi * nwords, nwords, transposed.data() + b * nwords * kBlock, kBlock, count,
                    out.data());
          const int64_t j0 = b * kBlock;
          if (static_cast<int64_t>(found_keys.size()) < nrel + count)
            found_keys.resize(std::max<int64_t>(nrel + count, 2 * static_cast<int64_t>(found_keys.size())));
          for (int64_t i = 0; i < count; ++i) {
            const uint64_t dj = out[i];
            const uint64_t rank_in_distance = static_cast<uint64_t>(++seen[dj]);
            found_keys[nrel] = (dj << 48) | rank_in_distance;
            nrel += is_relevant(qi, j0 + i);  // branch-free
          }
        }
        int64_t* t = tot + qi * bins;
        int64_t* r = rel + qi * bins;
        for (int64_t k = 0; k < bins; ++k) t[k] = seen[k];
        for (int64_t h = 0; h < nrel; ++h) ++r[found_keys[h] >> 48];
        int64_t acc_t = 0, acc_r = 0;
        for (int64_t k = 0; k < bins; ++k) {
          before_total[k] = acc_t;
          before_rel[k] = acc_r;
          acc_t += t[k];
          acc_r += r[k];
          seen_rel[k] = 0;
        }
        double sum = 0.0;
        int64_t hits_within = 0;
        for (int64_t h = 0; h < nrel; ++h) {
          const int64_t k = static_cast<int64_t>(found_keys[h] >> 48);
          const int64_t rank = before_total[k] + static_cast<int64_t>(found_keys[h] & kRankMask);
          const int64_t rel_rank = before_rel[k] + ++seen_rel[k];
          if (rank <= topk) {
            sum += static_cast<double>(rel_rank) / static_cast<double>(rank);
            ++hits_within;
          }
        }
        psum[qi] = sum;
        hit_count[qi] = hits_within;
      }
    });
  };
  if (ql.words == 0) {
    per_query([&](int64_t qi, int64_t j) { return ql.data[qi] == dl.data[j]; });
  } else {
    per_query([&](int64_t qi, int64_t j) { return ql.relevant(qi, dl, j); });
  }
  return {total, relevant, precision_sum, hits};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyhash, CPU, m) { m.impl("hamming_retrieval_stats", &hamming_retrieval_stats_cpu); }

}  // namespace pyhash
