// CPU kernel of the retrieval statistics behind pyhash.metrics: per-query histograms of
// (all, relevant) database items per Hamming distance, and the sum of precisions at the ranks of
// the relevant items when ties are broken by database position. Distances take nbits + 1
// values, so no per-query sort of the database is needed.
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

  auto per_query = [&](auto is_relevant) {
    at::parallel_for(0, nq, 1, [&](int64_t qb, int64_t qe) {
      std::vector<uint16_t> dist(nd);
      std::vector<uint8_t> is_rel(nd);
      std::vector<uint64_t> out(kBlock);
      // Four interleaved histograms break the store-to-load chains of repeated distances.
      std::vector<int64_t> t4(4 * bins), r4(4 * bins);
      std::vector<int64_t> seen_rel(bins), before_total(bins), before_rel(bins);
      for (int64_t qi = qb; qi < qe; ++qi) {
        std::fill(t4.begin(), t4.end(), 0);
        std::fill(r4.begin(), r4.end(), 0);
        for (int64_t b = 0; b < nblocks; ++b) {
          const int64_t count = std::min(kBlock, nd - b * kBlock);
          distances(q + qi * nwords, nwords, transposed.data() + b * nwords * kBlock, kBlock, count,
                    out.data());
          const int64_t j0 = b * kBlock;
          for (int64_t i = 0; i < count; ++i) {
            const uint64_t dj = out[i];
            const bool hit = is_relevant(qi, j0 + i);
            dist[j0 + i] = static_cast<uint16_t>(dj);
            is_rel[j0 + i] = hit;
            ++t4[(i & 3) * bins + dj];
            r4[(i & 3) * bins + dj] += hit;
          }
        }
        int64_t* t = tot + qi * bins;
        int64_t* r = rel + qi * bins;
        for (int64_t k = 0; k < bins; ++k) {
          t[k] = t4[k] + t4[bins + k] + t4[2 * bins + k] + t4[3 * bins + k];
          r[k] = r4[k] + r4[bins + k] + r4[2 * bins + k] + r4[3 * bins + k];
        }
        // Second pass in position order: exact ranks with ties broken by position.
        // Items seen so far per distance are counted in four interleaved counters (as above).
        int64_t acc_t = 0, acc_r = 0;
        for (int64_t k = 0; k < bins; ++k) {
          before_total[k] = acc_t;
          before_rel[k] = acc_r;
          acc_t += t[k];
          acc_r += r[k];
          seen_rel[k] = 0;
        }
        std::fill(t4.begin(), t4.end(), 0);
        double sum = 0.0;
        int64_t found = 0;
        for (int64_t j = 0; j < nd; ++j) {
          const int64_t k = dist[j];
          ++t4[(j & 3) * bins + k];
          if (!is_rel[j]) continue;
          const int64_t rank =
              before_total[k] + t4[k] + t4[bins + k] + t4[2 * bins + k] + t4[3 * bins + k];
          const int64_t rel_rank = before_rel[k] + ++seen_rel[k];
          if (rank <= topk) {
            sum += static_cast<double>(rel_rank) / static_cast<double>(rank);
            ++found;
          }
        }
        psum[qi] = sum;
        hit_count[qi] = found;
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
