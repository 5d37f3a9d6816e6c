// AVX-512 VPOPCNTDQ popcount distances: 8 codes a step, word count fixed at compile time up to 8.
#pragma GCC target("avx512f,avx512vpopcntdq")
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

// Unmasked fast path of min_update for a full column of 8 codes.
template <int NW, int kQueriesPerPass>
inline void min_update_full(const uint64_t* q, int64_t nwords, const uint64_t* block,
                            int64_t stride, int64_t i, __m512i* mins) {
  const int64_t nw = NW > 0 ? NW : nwords;
  if (nw == 1) {
    const __m512i x = _mm512_loadu_si512(block + i);
    for (int u = 0; u < kQueriesPerPass; ++u)
      mins[u] = _mm512_min_epu32(
          mins[u], _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_set1_epi64(static_cast<long long>(q[u])))));
    return;
  }
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

template <int NW, int kQueriesPerPass>
int64_t screen(const uint64_t* q, int64_t nq, int64_t nwords, const uint64_t* block, int64_t stride,
               int64_t count, const uint64_t* thresholds, uint64_t* hits) {
  const int64_t nw = NW > 0 ? NW : nwords;
  const int64_t groups = (count + kScreenCodes - 1) / kScreenCodes;
  int64_t nhits = 0;
  for (int64_t u0 = 0; u0 < nq; u0 += kQueriesPerPass) {
    // Pad the last pass with copies of query u0 that have threshold 0 (they never hit).
    uint64_t qpass[kQueriesPerPass * 64];
    uint64_t* qwords = qpass;
    uint32_t limit[kQueriesPerPass];
    const int64_t used = nq - u0 < kQueriesPerPass ? nq - u0 : kQueriesPerPass;
    if (nw <= 64) {
      for (int u = 0; u < kQueriesPerPass; ++u) {
        const int64_t src = u < used ? u0 + u : u0;
        for (int64_t w = 0; w < nw; ++w) qpass[u * nw + w] = q[src * nw + w];
        const uint64_t t = u < used ? thresholds[u0 + u] : 0;
        limit[u] = t > 0xffffffffull ? 0xffffffffu : static_cast<uint32_t>(t);
      }
    }
    __m512i tv[kQueriesPerPass];
    for (int u = 0; u < kQueriesPerPass; ++u) tv[u] = _mm512_set1_epi32(static_cast<int>(limit[u]));
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t begin = g * kScreenCodes;
      __m512i mins[kQueriesPerPass];
      for (int u = 0; u < kQueriesPerPass; ++u) mins[u] = _mm512_set1_epi64(-1);
      if (begin + kScreenCodes <= count) {
        for (int64_t i = begin; i < begin + kScreenCodes; i += 8)
          min_update_full<NW, kQueriesPerPass>(qwords, nw, block, stride, i, mins);
      } else {
        for (int64_t i = begin; i < count; i += 8) {
          const int64_t left = count - i;
          const __mmask8 lanes = left >= 8 ? static_cast<__mmask8>(0xff) : static_cast<__mmask8>((1u << left) - 1);
          min_update<NW, kQueriesPerPass>(qwords, nw, block, stride, i, lanes, mins);
        }
      }
      // Distances sit in the even 32-bit halves of each 64-bit lane.
      for (int u = 0; u < kQueriesPerPass; ++u)
        if (_mm512_mask_cmplt_epu32_mask(0x5555, mins[u], tv[u]))
          hits[nhits++] = (static_cast<uint64_t>(u0 + u) << 32) | static_cast<uint64_t>(g);
    }
  }
  return nhits;
}

}  // namespace

#ifndef QPP
#define QPP 4
#endif
ScreenFn screen_avx512(int64_t nwords) {
  switch (nwords) {
    case 1: return &screen<1, 8>;
    case 2: return &screen<2, QPP>;
    case 3: return &screen<3, QPP>;
    case 4: return &screen<4, QPP>;
    default: return &screen<0, QPP>;
  }
}

}  // namespace cpu
}  // namespace pyhash
