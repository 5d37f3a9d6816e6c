// A bit-sliced 64-bit Hamming screening loop on this CPU, against the popcount loop
// (tools/avx512_ceiling.c; docs/performance.md).
//
//   gcc -O3 -march=native -o /tmp/bitslice_ceiling tools/bitslice_ceiling.c
//   /tmp/bitslice_ceiling
//
// A block of 512 codes is stored as 64 bit planes (plane j holds bit j of every code) and their
// complements. For a query q, plane j XOR q_j is the plane or its complement, so it is read, not
// computed. A carry-save adder tree (two vpternlogq per full adder) sums the 64 mismatch planes
// into a 7-bit count per code, and a bit-sliced comparison with the threshold gives a 512-bit
// mask of candidates. That is about 130 vector operations per 512 codes and query, against 3 per
// 8 codes (xor, popcount, min) for the popcount loop.
//
// Measured 2026-12-02 on the AMD EPYC (Zen 4) VM, two runs: masks exact, 9.0-10.0 G distances/s
// in L1 and 10.8-12.0 streamed, against 18.1-18.5 and 13.4-17.5 for tools/avx512_ceiling.c. The
// compiled loop also needs a register copy per full adder (vpternlogq overwrites an input), a
// vector load per plane and a scalar load of each plane's per-query offset: about 330
// instructions per 512 codes, so it loses. Not used by pyhash; kept as the measurement.
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "measure_common.h"

#define XOR3 0x96
#define MAJ 0xe8

// Full adder: *sum = a ^ b ^ c, returns the carry.
static inline __m512i fa(__m512i* sum, __m512i a, __m512i b, __m512i c) {
  const __m512i carry = _mm512_ternarylogic_epi64(a, b, c, MAJ);
  *sum = _mm512_ternarylogic_epi64(a, b, c, XOR3);
  return carry;
}

// Planes of one block: plane j of polarity p at planes[(2 * j + p) * 8 .. + 8) (64-bit words).
static void to_planes(const uint64_t* codes, uint64_t* planes) {
  for (int j = 0; j < 64; j++)
    for (int w = 0; w < 8; w++) {
      uint64_t bits = 0;
      for (int i = 0; i < 64; i++) bits |= ((codes[w * 64 + i] >> j) & 1) << i;
      planes[(2 * j) * 8 + w] = bits;
      planes[(2 * j + 1) * 8 + w] = ~bits;
    }
}

#define LD(j) _mm512_load_si512(block + off[j])

// Sum of 8 mismatch planes starting at s, added into (ones, twos, fours); returns the carry of
// weight 8 (Harley-Seal).
static inline __m512i add8(const uint64_t* block, const int* off, int s, __m512i* ones, __m512i* twos,
                           __m512i* fours) {
  __m512i twosA = fa(ones, *ones, LD(s + 0), LD(s + 1));
  __m512i twosB = fa(ones, *ones, LD(s + 2), LD(s + 3));
  const __m512i foursA = fa(twos, *twos, twosA, twosB);
  twosA = fa(ones, *ones, LD(s + 4), LD(s + 5));
  twosB = fa(ones, *ones, LD(s + 6), LD(s + 7));
  const __m512i foursB = fa(twos, *twos, twosA, twosB);
  return fa(fours, *fours, foursA, foursB);
}

// Sum of 16 mismatch planes starting at s, added into (ones, twos, fours, eights); returns the
// carry of weight 16.
static inline __m512i add16(const uint64_t* block, const int* off, int s, __m512i* ones, __m512i* twos,
                            __m512i* fours, __m512i* eights) {
  const __m512i eightsA = add8(block, off, s, ones, twos, fours);
  const __m512i eightsB = add8(block, off, s + 8, ones, twos, fours);
  return fa(eights, *eights, eightsA, eightsB);
}

// Mask of the codes of the block with distance < limit (1 <= limit <= 64).
static inline __m512i below(const uint64_t* block, const int* off, int limit) {
  __m512i ones = _mm512_setzero_si512(), twos = ones, fours = ones, eights = ones;
  const __m512i s0 = add16(block, off, 0, &ones, &twos, &fours, &eights);
  const __m512i s1 = add16(block, off, 16, &ones, &twos, &fours, &eights);
  const __m512i s2 = add16(block, off, 32, &ones, &twos, &fours, &eights);
  const __m512i s3 = add16(block, off, 48, &ones, &twos, &fours, &eights);
  __m512i sixteens;
  const __m512i c32 = fa(&sixteens, s0, s1, s2);
  const __m512i c32b = _mm512_and_si512(sixteens, s3);
  sixteens = _mm512_xor_si512(sixteens, s3);
  const __m512i sixtyfours = _mm512_and_si512(c32, c32b);
  const __m512i thirtytwos = _mm512_xor_si512(c32, c32b);
  const __m512i bit[7] = {ones, twos, fours, eights, sixteens, thirtytwos, sixtyfours};
  // count < limit, from the most significant bit down.
  __m512i lt = _mm512_setzero_si512(), eq = _mm512_set1_epi64(-1);
  for (int b = 6; b >= 0; b--) {
    if ((limit >> b) & 1) {
      lt = _mm512_ternarylogic_epi64(lt, eq, bit[b], 0xf4);  // lt | (eq & ~bit)
      eq = _mm512_and_si512(eq, bit[b]);
    } else {
      eq = _mm512_andnot_si512(bit[b], eq);
    }
  }
  return lt;
}

// Blocks [0, nblocks) each scanned by nq queries; returns the number of candidates.
__attribute__((noipa)) static long scan(const uint64_t* planes, long nblocks, const uint64_t* q, int nq,
                                        const int* limit) {
  long hits = 0;
  static int off[512][64];
  for (int u = 0; u < nq; u++)
    for (int j = 0; j < 64; j++) off[u][j] = (2 * j + (int)((q[u] >> j) & 1)) * 8;
  for (long b = 0; b < nblocks; b += 4) {
    for (int u = 0; u < nq; u++)
      for (long c = b; c < b + 4; c++) {
        const __m512i m = below(planes + c * 1024, off[u], limit[u]);
        if (_mm512_test_epi64_mask(m, m)) hits += _mm_popcnt_u64(_mm512_reduce_or_epi64(m) | 1);
      }
  }
  return hits;
}

int main(void) {
  const long n = 1L << 20, nblocks = n / 512;
  const int nq = 512;
  uint64_t* db = aligned_alloc(64, n * sizeof(uint64_t));
  uint64_t* planes = aligned_alloc(64, nblocks * 1024 * sizeof(uint64_t));
  uint64_t q[512], s = 88172645463325252ULL;
  int limit[512];
  for (long i = 0; i < n; i++) db[i] = next(&s);
  for (int i = 0; i < nq; i++) q[i] = next(&s), limit[i] = 5;
  for (long b = 0; b < nblocks; b++) to_planes(db + b * 512, planes + b * 1024);

  // Check the masks against scalar popcounts on the first blocks, for several limits.
  int off[64];
  long errors = 0;
  for (int u = 0; u < 64; u++) {
    for (int j = 0; j < 64; j++) off[j] = (2 * j + (int)((q[u] >> j) & 1)) * 8;
    for (int lim = 1; lim <= 64; lim += 7)
      for (long b = 0; b < 8; b++) {
        uint64_t m[8];
        _mm512_storeu_si512(m, below(planes + b * 1024, off, lim));
        for (int i = 0; i < 512; i++) {
          const int d = __builtin_popcountll(db[b * 512 + i] ^ q[u]);
          errors += ((m[i / 64] >> (i % 64)) & 1) != (d < lim);
        }
      }
  }
  printf("mask errors                 %ld\n", errors);

  const int reps = 200;
  long hits = 0;
  double t = now();
  for (int r = 0; r < reps; r++) hits += scan(planes, 4, q, nq, limit);  // 2048 codes, in L1
  double dt = now() - t;
  printf("bit-sliced loop, in L1      %.1f G distances/s\n", 2048.0 * nq * reps / dt / 1e9);
  t = now();
  hits += scan(planes, nblocks, q, nq, limit);
  dt = now() - t;
  printf("bit-sliced loop, streamed   %.1f G distances/s (2^20 codes, 512 queries)\n", (double)n * nq / dt / 1e9);
  t = now();
  for (long b = 0; b < nblocks; b++) to_planes(db + b * 512, planes + b * 1024);
  dt = now() - t;
  printf("scalar transpose            %.1f ns per code\n", dt / n * 1e9);
  free(db);
  free(planes);
  return hits == 12345 ? 1 : 0;
}
