// CPU kernels: Hamming distance matrix, exact k-NN and range search over packed binary codes.
//
// Work is tiled as (group of queries) x (block of database codes): a block is transposed to
// word-major order once and scanned by every query of the group while it is in cache. Each query
// keeps a bounded top-k that exploits the small range of Hamming distances (0..nbits): a
// histogram of kept distances gives the exact acceptance threshold, so almost every code is
// rejected by one vector comparison of the block minimum.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <memory>
#include <vector>

#include "cpu/amx_layout.h"
#include "cpu/popcount.h"
#include "cpu/word_layout.h"
#include "hamming_common.h"

namespace pyhash {
namespace {

constexpr uint64_t kPositionMask = (uint64_t(1) << kPositionBits) - 1;
// Queries scanned together over each cached database block: up to 512, fewer when that leaves
// threads idle.
constexpr int64_t kMaxQueryGroup = 512;
constexpr int64_t kMinQueryGroup = 32;

inline uint64_t make_key(uint64_t distance, int64_t position) {
  return (distance << kPositionBits) | static_cast<uint64_t>(position);
}
inline int32_t key_distance(uint64_t key) { return static_cast<int32_t>(key >> kPositionBits); }
inline int64_t key_position(uint64_t key) { return static_cast<int64_t>(key & kPositionMask); }

// A 64-byte aligned, uninitialised buffer of n elements of T.
template <typename T>
class AlignedBuffer {
 public:
  explicit AlignedBuffer(int64_t n) : data_(n > 0 ? static_cast<T*>(std::aligned_alloc(64, round_up(n))) : nullptr) {
    TORCH_CHECK(n == 0 || data_ != nullptr, "pyhash: out of memory for a ", n * sizeof(T), "-byte buffer");
  }
  ~AlignedBuffer() { std::free(data_); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  T* get() const { return data_; }

 private:
  static size_t round_up(int64_t n) { return (static_cast<size_t>(n) * sizeof(T) + 63) / 64 * 64; }
  T* data_;
};
using AlignedWords = AlignedBuffer<uint64_t>;

// The 64-bit words of codes prepared by as_word_rows.
inline const uint64_t* words_of(const at::Tensor& word_rows) {
  return reinterpret_cast<const uint64_t*>(word_rows.data_ptr<uint8_t>());
}

// A query group prepared for the candidate searches (the AMX kernel needs its queries as int8
// tiles, and scratch).
class PreparedQueries {
 public:
  PreparedQueries(bool amx, const uint64_t* words, int64_t count, int64_t nwords)
      : amx_(amx), tiles_(amx_ ? cpu::amx_query_tile_bytes(count, nwords) : 0),
        code_tiles_(amx_ ? cpu::amx_code_tile_bytes(nwords) : 0),
        popcounts_(amx_ ? count : 0), limits_(amx_ ? cpu::amx_limit_count(count) : 0) {
    set_.words = words;
    set_.count = count;
    set_.nwords = nwords;
    if (!amx_) return;
    cpu::to_amx_query_tiles(words, count, nwords, tiles_.get(), popcounts_.get());
    set_.tiles = tiles_.get();
    set_.popcounts = popcounts_.get();
    set_.code_tiles = code_tiles_.get();
    set_.limits = limits_.get();
  }
  const cpu::QuerySet& get() const { return set_; }

 private:
  bool amx_;
  AlignedBuffer<int8_t> tiles_, code_tiles_;
  AlignedBuffer<int32_t> popcounts_, limits_;
  cpu::QuerySet set_;
};

// Database codes per block: about 32 KiB of words, a multiple of 16 codes.
int64_t block_codes(int64_t nwords) {
  int64_t n = 4096 / nwords;
  n = std::max<int64_t>(64, std::min<int64_t>(2048, n));
  return n / 16 * 16;
}

// The k smallest (distance, position) pairs seen so far, in scan (= position) order.
// Accepts a distance d only if d < threshold(); the threshold is the smallest t for which at least
// k kept candidates have distance <= t, so later candidates at distance t lose their tie.
class TopK {
 public:
  // cap: accept only d < cap from the start (the caller checks that k codes were found).
  TopK(int64_t k, int64_t nbits, uint64_t cap = UINT64_MAX)
      : k_(k), capacity_(std::max<int64_t>(2 * k, k + 1024)), hist_(nbits + 2, 0),
        threshold_(std::min<uint64_t>(nbits + 1, cap)) {}

  uint64_t threshold() const { return threshold_; }

  // Codes measured exactly at the start of a scan to seed the threshold: enough for about 4k
  // candidates, few enough that most of the first block is screened like the rest (seeding costs
  // a histogram update per code, about 30 times a screened code).
  int64_t seed_codes() const { return (std::max<int64_t>(256, 4 * k_) + 63) / 64 * 64; }

  void push(uint64_t distance, int64_t position) {
    keys_.push_back(make_key(distance, position));
    ++hist_[distance];
    ++count_below_;
    while (count_below_ >= k_) {
      --threshold_;
      count_below_ -= hist_[threshold_];
    }
    if (static_cast<int64_t>(keys_.size()) >= capacity_) compact();
  }

  // Pushes the codes of a block (distances d[0..count), positions base..) after lowering the
  // threshold to what the kept codes and this block reach together, so that at most about k of
  // the block are pushed however high the threshold was.
  void push_block(const uint64_t* d, int64_t count, int64_t base) {
    std::vector<int64_t> combined(hist_);
    for (int64_t i = 0; i < count; ++i)
      if (d[i] < threshold_) ++combined[d[i]];
    int64_t reached = 0;
    for (uint64_t t = 0; t < threshold_; ++t) {
      reached += combined[t];
      if (reached >= k_) {
        if (t + 1 < threshold_) {
          threshold_ = t + 1;
          count_below_ = 0;
          for (uint64_t s = 0; s < threshold_; ++s) count_below_ += hist_[s];
        }
        break;
      }
    }
    for (int64_t i = 0; i < count; ++i)
      if (d[i] < threshold_) push(d[i], base + i);
  }

  // Sorted (distance, position) keys of the k best (fewer if fewer were seen).
  std::vector<uint64_t> take() {
    compact();
    std::sort(keys_.begin(), keys_.end());
    return std::move(keys_);
  }

 private:
  void compact() {
    int64_t ties_wanted = k_ - count_below_;
    int64_t ties_kept = 0;
    size_t out = 0;
    for (uint64_t key : keys_) {
      const uint64_t d = key >> kPositionBits;
      if (d < threshold_ || (d == threshold_ && ties_kept < ties_wanted)) {
        if (d == threshold_) ++ties_kept;
        keys_[out++] = key;
      }
    }
    keys_.resize(out);
    if (threshold_ < hist_.size()) {
      hist_[threshold_] = ties_kept;
      for (size_t d = threshold_ + 1; d < hist_.size(); ++d) hist_[d] = 0;
    }
  }

  int64_t k_;
  int64_t capacity_;
  std::vector<int64_t> hist_;
  uint64_t threshold_;
  int64_t count_below_ = 0;
  std::vector<uint64_t> keys_;
};

// Every candidate with distance <= max_distance, in scan order.
class WithinRadius {
 public:
  explicit WithinRadius(int64_t max_distance) : threshold_(static_cast<uint64_t>(max_distance) + 1) {}
  uint64_t threshold() const { return threshold_; }
  int64_t seed_codes() const { return 0; }  // the threshold is fixed: every code is screened
  void push(uint64_t distance, int64_t position) { keys_.push_back(make_key(distance, position)); }
  void push_block(const uint64_t* d, int64_t count, int64_t base) {
    for (int64_t i = 0; i < count; ++i)
      if (d[i] < threshold_) push(d[i], base + i);
  }
  std::vector<uint64_t> take() { return std::move(keys_); }

 private:
  uint64_t threshold_;
  std::vector<uint64_t> keys_;
};

// Scans database codes [begin, end) for queries [q_begin, q_end), feeding each query's collector.
// The first seed_codes() codes seed every collector exactly (all their distances); every later
// code is screened, and only those below each query's current threshold are passed on.
template <typename Collector>
void scan(const uint64_t* queries, const uint64_t* database, int64_t nwords, int64_t q_begin,
          int64_t q_end, int64_t begin, int64_t end, std::vector<Collector>& collectors) {
  const cpu::Isa isa = cpu::active_isa();
  const cpu::BlockDistanceFn distances = cpu::block_distance_fn(isa, nwords);
  const cpu::CandidatesFn candidates = cpu::candidates_fn(isa, nwords);
  const int64_t block = block_codes(nwords);
  const int64_t nq = q_end - q_begin;
  if (nq == 0) return;
  const int64_t seed = std::min({collectors[0].seed_codes(), block, end - begin});
  AlignedWords transposed(nwords > 1 ? nwords * block : 0);
  const bool amx = cpu::amx_candidates(isa, nwords) && end - begin > seed;
  const PreparedQueries prepared(amx, queries + q_begin * nwords, nq, nwords);
  std::vector<uint64_t> thresholds(nq), dist(std::max<int64_t>(seed, 1));
  std::unique_ptr<uint64_t[]> found(new uint64_t[nq * block]);  // uninitialised on purpose
  for (int64_t b0 = begin; b0 < end; b0 += block) {
    const int64_t count = std::min(block, end - b0);
    const uint64_t* words = database + b0;
    int64_t stride = count;
    if (nwords > 1) {
      cpu::to_word_major(database + b0 * nwords, count, nwords, transposed.get(), block);
      words = transposed.get();
      stride = block;
    }
    int64_t skip = 0;  // codes of this block already seen
    if (b0 == begin && seed > 0) {
      for (int64_t u = 0; u < nq; ++u) {
        distances(queries + (q_begin + u) * nwords, nwords, words, stride, seed, dist.data());
        collectors[u].push_block(dist.data(), seed, b0);
      }
      skip = seed;
    }
    // The thresholds are read once per candidate search. They fall fastest in the first block,
    // so it is screened in doubling steps after the seed; later blocks in one step.
    for (int64_t step = b0 == begin ? std::max<int64_t>(seed, 256) : count; skip < count; step *= 2) {
      const int64_t len = std::min(step, count - skip);
      for (int64_t u = 0; u < nq; ++u) thresholds[u] = collectors[u].threshold();
      // Word w of code i sits at words[w * stride + i], so the codes from skip on start at words + skip.
      const int64_t n = candidates(prepared.get(), words + skip, stride, len, thresholds.data(), found.get());
      for (int64_t h = 0; h < n; ++h) {
        const uint64_t key = found[h];
        Collector& c = collectors[key >> 48];
        const uint64_t d = (key >> 32) & 0xffff;
        if (d < c.threshold()) c.push(d, b0 + skip + static_cast<int64_t>(key & 0xffffffffu));
      }
      skip += len;
    }
  }
}

// scan(), then each collector's sorted keys.
template <typename Collector>
std::vector<std::vector<uint64_t>> scan_keys(const uint64_t* queries, const uint64_t* database,
                                             int64_t nwords, int64_t q_begin, int64_t q_end,
                                             int64_t begin, int64_t end,
                                             std::vector<Collector>& collectors) {
  scan(queries, database, nwords, q_begin, q_end, begin, end, collectors);
  std::vector<std::vector<uint64_t>> keys(collectors.size());
  for (size_t u = 0; u < keys.size(); ++u) keys[u] = collectors[u].take();
  return keys;
}

// Runs `task(q_begin, q_end, begin, end)` (the sorted keys of queries [q_begin, q_end) over
// database codes [begin, end)) over (query group x database chunk) tasks in parallel and returns,
// per query, the merged sorted keys of all chunks (at most `limit` of them).
template <typename Task>
std::vector<std::vector<uint64_t>> search_all(int64_t nq, int64_t nd, Task task, int64_t limit) {
  const int64_t threads = at::get_num_threads();
  const int64_t group_size = std::min(kMaxQueryGroup, std::max(kMinQueryGroup, (nq + threads - 1) / threads));
  const int64_t groups = (nq + group_size - 1) / group_size;
  // Split the database too when there are fewer query groups than threads. Not more often: each
  // chunk has its own, looser k-NN threshold (measured in docs/performance.md, "2 threads").
  int64_t chunks = 1;
  if (groups < threads) {
    const int64_t wanted = (threads + groups - 1) / groups;
    chunks = std::max<int64_t>(1, std::min<int64_t>(wanted, nd / 16384));
  }
  // Chunks start on 64-code boundaries so vector loads stay cache-line aligned.
  const int64_t chunk_len = ((nd + chunks - 1) / chunks + 63) / 64 * 64;

  std::vector<std::vector<uint64_t>> partial(nq * chunks);
  at::parallel_for(0, groups * chunks, 1, [&](int64_t task_begin, int64_t task_end) {
    for (int64_t t = task_begin; t < task_end; ++t) {
      const int64_t g = t / chunks, c = t % chunks;
      const int64_t q_begin = g * group_size, q_end = std::min(nq, q_begin + group_size);
      const int64_t begin = c * chunk_len, end = std::min(nd, begin + chunk_len);
      if (begin >= end) continue;
      std::vector<std::vector<uint64_t>> keys = task(q_begin, q_end, begin, end);
      for (int64_t q = q_begin; q < q_end; ++q) partial[q * chunks + c] = std::move(keys[q - q_begin]);
    }
  });

  std::vector<std::vector<uint64_t>> merged(nq);
  at::parallel_for(0, nq, 16, [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q) {
      std::vector<uint64_t>& keys = merged[q];
      if (chunks == 1) {
        keys = std::move(partial[q]);
      } else {
        for (int64_t c = 0; c < chunks; ++c) {
          auto& part = partial[q * chunks + c];
          keys.insert(keys.end(), part.begin(), part.end());
          std::vector<uint64_t>().swap(part);
        }
      }
      std::sort(keys.begin(), keys.end());
      if (static_cast<int64_t>(keys.size()) > limit) keys.resize(limit);
    }
  });
  return merged;
}

// Early in a scan the k-NN threshold is loose and many codes pass it. So on large chunks, a
// strided sample of one code in kSampleStride first gives each query the distance of its r-th
// nearest sample code, with r about kSampleMargin times the rank that would predict the k-th
// nearest of the whole chunk. Codes beyond that distance are then rejected from the start. The
// queries with fewer than k codes of the chunk within it (unlikely) are scanned again, uncapped.
constexpr int64_t kSampleStride = 32;
constexpr int64_t kMinSampledChunk = 65536;
constexpr int64_t kSampleMargin = 3;
constexpr int64_t kMinSampledK = 64;  // k = 10 costs only 4-5 % over k = 1 without it

// Per-query caps for TopK over codes [begin, end), or an empty vector when sampling would not
// pay (a small chunk or a small k).
std::vector<uint64_t> sampled_caps(const uint64_t* queries, const uint64_t* database, int64_t nwords,
                                   int64_t q_begin, int64_t q_end, int64_t begin, int64_t end,
                                   int64_t k, int64_t nbits) {
  const int64_t n = end - begin;
  if (n < kMinSampledChunk || k < kMinSampledK) return {};
  const int64_t samples = n / kSampleStride;
  const int64_t rank = (kSampleMargin * k * samples + n - 1) / n;
  if (rank > samples / 2) return {};
  AlignedWords sample(samples * nwords);
  for (int64_t s = 0; s < samples; ++s)
    std::copy_n(database + (begin + s * kSampleStride) * nwords, nwords, sample.get() + s * nwords);
  std::vector<TopK> collectors(q_end - q_begin, TopK(rank, nbits));
  const auto keys = scan_keys(queries, sample.get(), nwords, q_begin, q_end, 0, samples, collectors);
  std::vector<uint64_t> caps(keys.size());
  for (size_t u = 0; u < keys.size(); ++u) caps[u] = static_cast<uint64_t>(key_distance(keys[u][rank - 1])) + 1;
  return caps;
}

// The sorted keys of the k nearest codes among [begin, end) for queries [q_begin, q_end).
std::vector<std::vector<uint64_t>> knn_task(const uint64_t* queries, const uint64_t* database,
                                            int64_t nwords, int64_t q_begin, int64_t q_end,
                                            int64_t begin, int64_t end, int64_t k, int64_t nbits) {
  const int64_t nq = q_end - q_begin;
  const std::vector<uint64_t> caps = sampled_caps(queries, database, nwords, q_begin, q_end, begin, end, k, nbits);
  std::vector<TopK> collectors;
  collectors.reserve(nq);
  for (int64_t u = 0; u < nq; ++u) collectors.emplace_back(k, nbits, caps.empty() ? UINT64_MAX : caps[u]);
  auto keys = scan_keys(queries, database, nwords, q_begin, q_end, begin, end, collectors);
  const int64_t wanted = std::min(k, end - begin);
  std::vector<int64_t> misled;  // queries with fewer than k codes within their cap
  for (int64_t u = 0; u < nq; ++u)
    if (!caps.empty() && static_cast<int64_t>(keys[u].size()) < wanted) misled.push_back(u);
  if (misled.empty()) return keys;
  // Scan them again together, uncapped (one query alone would cost a full pass of the kernel).
  const int64_t nm = static_cast<int64_t>(misled.size());
  std::vector<uint64_t> again(nm * nwords);
  for (int64_t m = 0; m < nm; ++m)
    std::copy_n(queries + (q_begin + misled[m]) * nwords, nwords, again.data() + m * nwords);
  std::vector<TopK> uncapped(nm, TopK(k, nbits));
  auto rescanned = scan_keys(again.data(), database, nwords, 0, nm, begin, end, uncapped);
  for (int64_t m = 0; m < nm; ++m) keys[misled[m]] = std::move(rescanned[m]);
  return keys;
}

at::Tensor hamming_distance_cpu(const at::Tensor& a, const at::Tensor& b) {
  check_pair(a, b);
  const at::Tensor a_words = as_word_rows(a);
  const at::Tensor b_words = as_word_rows(b);
  const int64_t na = a.size(0), nb = b.size(0), nwords = a_words.size(1) / 8;
  at::Tensor result = at::empty({na, nb}, a.options().dtype(at::kInt));
  if (na == 0 || nb == 0) return result;
  const uint64_t* aw = words_of(a_words);
  const uint64_t* bw = words_of(b_words);
  int32_t* out = result.data_ptr<int32_t>();
  const cpu::BlockDistanceFn distances = cpu::block_distance_fn(cpu::active_isa(), nwords);
  const int64_t block = block_codes(nwords);
  const int64_t nblocks = (nb + block - 1) / block;
  at::parallel_for(0, nblocks, 1, [&](int64_t blk_begin, int64_t blk_end) {
    AlignedWords transposed(nwords * block);
    std::vector<uint64_t> dist(block);
    for (int64_t blk = blk_begin; blk < blk_end; ++blk) {
      const int64_t b0 = blk * block, count = std::min(block, nb - b0);
      cpu::to_word_major(bw + b0 * nwords, count, nwords, transposed.get(), block);
      for (int64_t i = 0; i < na; ++i) {
        distances(aw + i * nwords, nwords, transposed.get(), block, count, dist.data());
        int32_t* row = out + i * nb + b0;
        for (int64_t j = 0; j < count; ++j) row[j] = static_cast<int32_t>(dist[j]);
      }
    }
  });
  return result;
}

std::tuple<at::Tensor, at::Tensor> hamming_knn_cpu(const at::Tensor& queries,
                                                   const at::Tensor& database, int64_t k) {
  check_pair(queries, database);
  TORCH_CHECK(k >= 1, "k must be >= 1, got ", k);
  const int64_t nq = queries.size(0), nd = database.size(0);
  const int64_t nbits = queries.size(1) * 8;
  at::Tensor distances = at::full({nq, k}, INT32_MAX, queries.options().dtype(at::kInt));
  at::Tensor indices = at::full({nq, k}, -1, queries.options().dtype(at::kLong));
  if (nq == 0 || nd == 0) return {distances, indices};
  const at::Tensor q_words = as_word_rows(queries), db_words = as_word_rows(database);
  const int64_t kept = std::min(k, nd), nwords = q_words.size(1) / 8;
  auto best = search_all(nq, nd, [&](int64_t q_begin, int64_t q_end, int64_t begin, int64_t end) {
    return knn_task(words_of(q_words), words_of(db_words), nwords, q_begin, q_end, begin, end, kept, nbits);
  }, kept);
  int32_t* dptr = distances.data_ptr<int32_t>();
  int64_t* iptr = indices.data_ptr<int64_t>();
  at::parallel_for(0, nq, 64, [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q) {
      const auto& keys = best[q];
      for (size_t j = 0; j < keys.size(); ++j) {
        dptr[q * k + j] = key_distance(keys[j]);
        iptr[q * k + j] = key_position(keys[j]);
      }
    }
  });
  return {distances, indices};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> hamming_range_cpu(const at::Tensor& queries,
                                                                 const at::Tensor& database,
                                                                 int64_t max_distance) {
  check_pair(queries, database);
  TORCH_CHECK(max_distance >= 0, "max_distance must be >= 0, got ", max_distance);
  const int64_t nq = queries.size(0), nd = database.size(0);
  const int64_t nbits = queries.size(1) * 8;
  const int64_t radius = std::min(max_distance, nbits);
  std::vector<std::vector<uint64_t>> found(nq);
  if (nq > 0 && nd > 0) {
    const at::Tensor q_words = as_word_rows(queries), db_words = as_word_rows(database);
    const int64_t nwords = q_words.size(1) / 8;
    found = search_all(nq, nd, [&](int64_t q_begin, int64_t q_end, int64_t begin, int64_t end) {
      std::vector<WithinRadius> collectors(q_end - q_begin, WithinRadius(radius));
      return scan_keys(words_of(q_words), words_of(db_words), nwords, q_begin, q_end, begin, end, collectors);
    }, nd);
  }
  at::Tensor lims = at::empty({nq + 1}, queries.options().dtype(at::kLong));
  int64_t* lp = lims.data_ptr<int64_t>();
  lp[0] = 0;
  for (int64_t q = 0; q < nq; ++q) lp[q + 1] = lp[q] + static_cast<int64_t>(found[q].size());
  at::Tensor distances = at::empty({lp[nq]}, queries.options().dtype(at::kInt));
  at::Tensor indices = at::empty({lp[nq]}, queries.options().dtype(at::kLong));
  int32_t* dptr = distances.data_ptr<int32_t>();
  int64_t* iptr = indices.data_ptr<int64_t>();
  at::parallel_for(0, nq, 64, [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q)
      for (size_t j = 0; j < found[q].size(); ++j) {
        dptr[lp[q] + j] = key_distance(found[q][j]);
        iptr[lp[q] + j] = key_position(found[q][j]);
      }
  });
  return {lims, distances, indices};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyhash, CPU, m) {
  m.impl("hamming_distance", &hamming_distance_cpu);
  m.impl("hamming_knn", &hamming_knn_cpu);
  m.impl("hamming_range", &hamming_range_cpu);
}

}  // namespace pyhash
