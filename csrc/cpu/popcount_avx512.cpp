// AVX-512 VPOPCNTDQ popcount distances: 8 codes a step, word count fixed at compile time up to 8.
#pragma GCC target("avx512f,avx512vpopcntdq")
// GCC 12's own intrinsic headers trip these (an "undefined" pass-through operand), not our code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu/popcount.h"

namespace pyhash {
namespace cpu {
namespace {

inline __m512i word_distance(const uint64_t* row, int64_t i, __m512i qv) {
  return _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(row + i), qv));
}

inline __m512i word_distance_masked(const uint64_t* row, int64_t i, __mmask8 m, __m512i qv) {
  return _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_maskz_loadu_epi64(m, row + i), qv));
}

// NW > 0: word count known at compile time (query words stay in registers); NW == 0: any count.
template <int NW>
uint64_t block_avx512(const uint64_t* q, int64_t nwords_rt, const uint64_t* block, int64_t stride,
                      int64_t count, uint64_t* out) {
  const int64_t nwords = NW > 0 ? NW : nwords_rt;
  __m512i qreg[NW > 0 ? NW : 1];
  if (NW > 0)
    for (int w = 0; w < NW; ++w) qreg[w] = _mm512_set1_epi64(static_cast<long long>(q[w]));
  auto query_word = [&](int64_t w) {
    return NW > 0 ? qreg[w] : _mm512_set1_epi64(static_cast<long long>(q[w]));
  };

  __m512i smallest = _mm512_set1_epi64(-1);
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {  // two independent vectors per step hide popcount latency
    __m512i a = word_distance(block, i, query_word(0));
    __m512i b = word_distance(block, i + 8, query_word(0));
    for (int64_t w = 1; w < nwords; ++w) {
      a = _mm512_add_epi64(a, word_distance(block + w * stride, i, query_word(w)));
      b = _mm512_add_epi64(b, word_distance(block + w * stride, i + 8, query_word(w)));
    }
    _mm512_storeu_si512(out + i, a);
    _mm512_storeu_si512(out + i + 8, b);
    smallest = _mm512_min_epu64(smallest, _mm512_min_epu64(a, b));
  }
  for (; i < count; i += 8) {
    const int64_t left = count - i;
    const __mmask8 m = left >= 8 ? static_cast<__mmask8>(0xff) : static_cast<__mmask8>((1u << left) - 1);
    __m512i a = word_distance_masked(block, i, m, query_word(0));
    for (int64_t w = 1; w < nwords; ++w)
      a = _mm512_add_epi64(a, word_distance_masked(block + w * stride, i, m, query_word(w)));
    _mm512_mask_storeu_epi64(out + i, m, a);
    smallest = _mm512_mask_min_epu64(smallest, m, smallest, a);
  }
  return static_cast<uint64_t>(_mm512_reduce_min_epu64(smallest));
}

}  // namespace

BlockDistanceFn block_distance_avx512(int64_t nwords) {
  switch (nwords) {
    case 1: return &block_avx512<1>;
    case 2: return &block_avx512<2>;
    case 3: return &block_avx512<3>;
    case 4: return &block_avx512<4>;
    case 5: return &block_avx512<5>;
    case 6: return &block_avx512<6>;
    case 7: return &block_avx512<7>;
    case 8: return &block_avx512<8>;
    default: return &block_avx512<0>;
  }
}

}  // namespace cpu
}  // namespace pyhash

namespace pyhash {
namespace cpu {
namespace {


// Minimum distance of each of 8 queries over the 8 codes at column i (masked lanes excluded).
template <int NW, int kQueriesPerPass>
inline void min_update(const uint64_t* q, int64_t nwords, const uint64_t* block, int64_t stride,
                       int64_t i, __mmask8 lanes, __m512i* mins) {
  const int64_t nw = NW > 0 ? NW : nwords;
  if (nw == 1) {
    const __m512i x = _mm512_maskz_loadu_epi64(lanes, block + i);
    for (int u = 0; u < kQueriesPerPass; ++u) {
      __m512i d = _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_set1_epi64(static_cast<long long>(q[u]))));
      d = _mm512_mask_mov_epi64(_mm512_set1_epi64(-1), lanes, d);
      mins[u] = _mm512_min_epu32(mins[u], d);
    }
    return;
  }
  __m512i acc[kQueriesPerPass];
  for (int u = 0; u < kQueriesPerPass; ++u) acc[u] = _mm512_setzero_si512();
  for (int64_t w = 0; w < nw; ++w) {
    const __m512i x = _mm512_maskz_loadu_epi64(lanes, block + w * stride + i);
    for (int u = 0; u < kQueriesPerPass; ++u)
      acc[u] = _mm512_add_epi64(acc[u], _mm512_popcnt_epi64(_mm512_xor_si512(
                                            x, _mm512_set1_epi64(static_cast<long long>(q[u * nw + w])))));
  }
  for (int u = 0; u < kQueriesPerPass; ++u)
    mins[u] = _mm512_min_epu32(mins[u], _mm512_mask_mov_epi64(_mm512_set1_epi64(-1), lanes, acc[u]));
}

// One full column of 8 codes with several words per code (word-major block).
template <int NW, int kQueriesPerPass>
inline void min_update_full_column(const uint64_t* q, int64_t nw, const uint64_t* block,
                                   int64_t stride, int64_t i, __m512i* mins) {
  __m512i acc[kQueriesPerPass];
  for (int u = 0; u < kQueriesPerPass; ++u) acc[u] = _mm512_setzero_si512();
  for (int64_t w = 0; w < nw; ++w) {
    const __m512i x = _mm512_loadu_si512(block + w * stride + i);
    for (int u = 0; u < kQueriesPerPass; ++u)
      acc[u] = _mm512_add_epi64(acc[u], _mm512_popcnt_epi64(_mm512_xor_si512(
                                            x, _mm512_set1_epi64(static_cast<long long>(q[u * nw + w])))));
  }
  for (int u = 0; u < kQueriesPerPass; ++u) mins[u] = _mm512_min_epu32(mins[u], acc[u]);
}

// Unmasked fast path of min_update for full columns [begin, end) of 8 codes each. For one word
// per code the broadcast queries `qv` stay in registers across the whole pass.
template <int NW, int kQueriesPerPass>
inline void min_update_full(const uint64_t* q, const __m512i* qv, int64_t nwords,
                            const uint64_t* block, int64_t stride, int64_t begin, int64_t end,
                            __m512i* mins) {
  const int64_t nw = NW > 0 ? NW : nwords;
  if (nw == 1) {
    __m512i m[kQueriesPerPass];
    const __m512i x0 = _mm512_loadu_si512(block + begin);
    for (int u = 0; u < kQueriesPerPass; ++u) m[u] = _mm512_popcnt_epi64(_mm512_xor_si512(x0, qv[u]));
    for (int64_t i = begin + 8; i < end; i += 8) {
      const __m512i x = _mm512_loadu_si512(block + i);
      for (int u = 0; u < kQueriesPerPass; ++u)
        m[u] = _mm512_min_epu32(m[u], _mm512_popcnt_epi64(_mm512_xor_si512(x, qv[u])));
    }
    for (int u = 0; u < kQueriesPerPass; ++u) mins[u] = m[u];
    return;
  }
  for (int u = 0; u < kQueriesPerPass; ++u) mins[u] = _mm512_set1_epi64(-1);
  for (int64_t i = begin; i < end; i += 8) min_update_full_column<NW, kQueriesPerPass>(q, nw, block, stride, i, mins);
}

// Distances of one query to the 8 codes at column i (lanes outside `lanes` are garbage).
template <int NW>
inline __m512i distances8(const uint64_t* qu, int64_t nwords, const uint64_t* block, int64_t stride,
                          int64_t i, __mmask8 lanes) {
  const int64_t nw = NW > 0 ? NW : nwords;
  __m512i acc = word_distance_masked(block, i, lanes, _mm512_set1_epi64(static_cast<long long>(qu[0])));
  for (int64_t w = 1; w < nw; ++w)
    acc = _mm512_add_epi64(acc, word_distance_masked(block + w * stride, i, lanes,
                                                     _mm512_set1_epi64(static_cast<long long>(qu[w]))));
  return acc;
}

inline __mmask8 lanes_from(int64_t i, int64_t count) {
  const int64_t left = count - i;
  return left >= 8 ? static_cast<__mmask8>(0xff) : static_cast<__mmask8>((1u << left) - 1);
}

template <int NW, int kQueriesPerPass>
int64_t candidates(const QuerySet& queries, const uint64_t* block, int64_t stride, int64_t count,
                   const uint64_t* thresholds, uint64_t* out) {
  const uint64_t* q = queries.words;
  const int64_t nq = queries.count, nwords = queries.nwords;
  const int64_t nw = NW > 0 ? NW : nwords;
  const int64_t groups = (count + kScreenCodes - 1) / kScreenCodes;
  int64_t n = 0;
  for (int64_t u0 = 0; u0 < nq; u0 += kQueriesPerPass) {
    // Pad the last pass with copies of query u0 that have threshold 0 (they never match).
    uint64_t qpass[kQueriesPerPass * 64];
    uint32_t limit[kQueriesPerPass];
    const int64_t used = nq - u0 < kQueriesPerPass ? nq - u0 : kQueriesPerPass;
    for (int u = 0; u < kQueriesPerPass; ++u) {
      const int64_t src = u < used ? u0 + u : u0;
      for (int64_t w = 0; w < nw; ++w) qpass[u * nw + w] = q[src * nw + w];
      const uint64_t t = u < used ? thresholds[u0 + u] : 0;
      limit[u] = t > 0xffffffffull ? 0xffffffffu : static_cast<uint32_t>(t);
    }
    __m512i qv[kQueriesPerPass];
    for (int u = 0; u < kQueriesPerPass; ++u) qv[u] = _mm512_set1_epi64(static_cast<long long>(qpass[u * nw]));
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t begin = g * kScreenCodes;
      const int64_t end = begin + kScreenCodes < count ? begin + kScreenCodes : count;
      __m512i mins[kQueriesPerPass];
      if (end - begin == kScreenCodes) {
        min_update_full<NW, kQueriesPerPass>(qpass, qv, nw, block, stride, begin, end, mins);
      } else {
        for (int u = 0; u < kQueriesPerPass; ++u) mins[u] = _mm512_set1_epi64(-1);
        for (int64_t i = begin; i < end; i += 8)
          min_update<NW, kQueriesPerPass>(qpass, nw, block, stride, i, lanes_from(i, end), mins);
      }
      for (int u = 0; u < kQueriesPerPass; ++u) {
        // Distances sit in the even 32-bit halves of each 64-bit lane.
        const __m512i tv = _mm512_set1_epi32(static_cast<int>(limit[u]));
        if (!_mm512_mask_cmplt_epu32_mask(0x5555, mins[u], tv)) continue;
        // Rare: find the codes of this group below the threshold, in position order.
        const __m512i t64 = _mm512_set1_epi64(static_cast<long long>(limit[u]));
        const uint64_t tag = static_cast<uint64_t>(u0 + u) << 48;
        for (int64_t i = begin; i < end; i += 8) {
          const __mmask8 lanes = lanes_from(i, end);
          const __m512i d = distances8<NW>(qpass + u * nw, nw, block, stride, i, lanes);
          __mmask8 below = _mm512_mask_cmplt_epu64_mask(lanes, d, t64);
          if (!below) continue;
          uint64_t dist[8];
          _mm512_storeu_si512(dist, d);
          while (below) {
            const int lane = __builtin_ctz(below);
            below = static_cast<__mmask8>(below & (below - 1));
            out[n++] = tag | (dist[lane] << 32) | static_cast<uint64_t>(i + lane);
          }
        }
      }
    }
  }
  return n;
}

}  // namespace

CandidatesFn candidates_avx512(int64_t nwords) {
  switch (nwords) {
    case 1: return &candidates<1, 8>;
    case 2: return &candidates<2, 4>;
    case 3: return &candidates<3, 4>;
    case 4: return &candidates<4, 4>;
    default: return &candidates<0, 4>;
  }
}

}  // namespace cpu
}  // namespace pyhash
