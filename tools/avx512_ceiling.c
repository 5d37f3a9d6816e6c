// The AVX-512 issue-rate ceiling of a 64-bit Hamming scan on this CPU (docs/performance.md).
//
//   gcc -O3 -mavx512f -mavx512bw -mavx512vpopcntdq -o /tmp/avx512_ceiling tools/avx512_ceiling.c
//   /tmp/avx512_ceiling
//
// Prints the clock (a chain of dependent adds, one per cycle), the vpopcntq throughput, and the
// rate of the minimal screening loop (per 8 codes and query: xor, popcount, running min) twice:
// on one 2048-code block held in L1, and streamed over 2^20 codes in 2048-code blocks scanned by
// 512 queries with a threshold test every 256 codes, as pyhash's CPU k-NN does.
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "measure_common.h"

__attribute__((noipa)) static void popcount_only(long iters, __m512i* io) {
  __m512i a0 = io[0], a1 = io[1], a2 = io[2], a3 = io[3], a4 = io[4], a5 = io[5], a6 = io[6], a7 = io[7];
  for (long i = 0; i < iters; i++) {
    a0 = _mm512_popcnt_epi64(a0); a1 = _mm512_popcnt_epi64(a1); a2 = _mm512_popcnt_epi64(a2);
    a3 = _mm512_popcnt_epi64(a3); a4 = _mm512_popcnt_epi64(a4); a5 = _mm512_popcnt_epi64(a5);
    a6 = _mm512_popcnt_epi64(a6); a7 = _mm512_popcnt_epi64(a7);
    __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7));
  }
  io[0] = _mm512_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)),
                           _mm512_add_epi64(_mm512_add_epi64(a4, a5), _mm512_add_epi64(a6, a7)));
}

// Codes [0, n) in blocks of 2048, each scanned by nq queries (8 at a time) in groups of `group`
// codes; returns how many (query, group) minima fall below the query's limit.
__attribute__((noipa)) static long scan(const uint64_t* db, long n, const uint64_t* q, int nq,
                                           const uint32_t* limit, int group) {
  long hits = 0;
  for (long b0 = 0; b0 < n; b0 += 2048) {
    const uint64_t* block = db + b0;
    for (int u0 = 0; u0 < nq; u0 += 8) {
      __m512i qv[8];
      for (int u = 0; u < 8; u++) qv[u] = _mm512_set1_epi64((long long)q[u0 + u]);
      for (int g = 0; g < 2048; g += group) {
        __m512i m[8];
        const __m512i x0 = _mm512_loadu_si512(block + g);
        _Pragma("GCC unroll 8") for (int u = 0; u < 8; u++) m[u] = _mm512_popcnt_epi64(_mm512_xor_si512(x0, qv[u]));
        for (int i = g + 8; i < g + group; i += 8) {
          const __m512i x = _mm512_loadu_si512(block + i);
          _Pragma("GCC unroll 8") for (int u = 0; u < 8; u++)
            m[u] = _mm512_min_epu32(m[u], _mm512_popcnt_epi64(_mm512_xor_si512(x, qv[u])));
        }
        for (int u = 0; u < 8; u++)
          hits += _mm512_mask_cmplt_epu32_mask(0x5555, m[u], _mm512_set1_epi32((int)limit[u0 + u])) != 0;
      }
    }
  }
  return hits;
}

int main(void) {
  const long adds = 1000000000;
  uint64_t x = 1;
  double t = now();
  for (long i = 0; i < adds; i++) __asm__ volatile("add $1, %0" : "+r"(x));
  const double ghz = adds / (now() - t) / 1e9;
  printf("clock                       %.2f GHz (one dependent add per cycle)\n", ghz);

  __m512i io[8];
  for (int i = 0; i < 8; i++) io[i] = _mm512_set1_epi64(i * 77 + 1);
  const long iters = 200000000;
  t = now();
  popcount_only(iters, io);
  double dt = now() - t;
  printf("vpopcntq zmm                %.2f per cycle = %.1f G popcounts of 64 bits/s\n", 8.0 * iters / dt / 1e9 / ghz,
         64.0 * iters / dt / 1e9);

  const long n = 1L << 20;
  const int nq = 512;
  uint64_t* db = aligned_alloc(64, n * sizeof(uint64_t));
  uint64_t q[512], s = 88172645463325252ULL;
  uint32_t limit[512];
  for (long i = 0; i < n; i++) db[i] = next(&s);
  for (int i = 0; i < nq; i++) q[i] = next(&s), limit[i] = 5;
  const int reps = 40;
  long hits = 0;
  t = now();
  for (int r = 0; r < reps; r++) hits += scan(db, 2048, q, nq, limit, 2048);  // one block, in L1
  dt = now() - t;
  printf("screening loop, in L1       %.1f G distances/s = %.2f per cycle\n", 2048.0 * nq * reps / dt / 1e9,
         2048.0 * nq * reps / dt / 1e9 / ghz);
  t = now();
  hits += scan(db, n, q, nq, limit, 256);
  dt = now() - t;
  printf("screening loop, streamed    %.1f G distances/s (2^20 codes, 512 queries, groups of 256)\n",
         (double)n * nq / dt / 1e9);
  free(db);
  return hits == 12345 ? 1 : 0;  // keeps the scans from being optimised away
}
