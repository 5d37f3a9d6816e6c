// Query layout for the AMX candidate search (plain C++, no ISA options: include it only from files
// compiled for the baseline).
//
// AMX TDPBSSD multiplies int8 tiles: C[16 x 16] += A[16 x 64] * B[64 x 16], the B operand stored
// four k values per 32-bit column ("VNNI" layout: B row r, bytes 4n..4n+3 = k 4r..4r+3 of column
// n). pyhash puts 16 database codes in A (byte k of a row: bit k of the code as 0 or -1) and 16
// queries in B (bit k as +1 or -1). Then C = |x| - 2 x.q and the Hamming distance is
// d = |x| + |q| - 2 x.q = C + |q|, one 64-bit word (K = 64) per TDPBSSD.
#pragma once

#include <cstdint>
#include <cstring>

#include "cpu/popcount.h"

namespace pyhash {
namespace cpu {

// Queries are tiled 32 at a time (two B tiles per step); the last pair is padded with zeros.
inline int64_t amx_query_pairs(int64_t nq) { return (nq + 31) / 32; }

// Bytes of query tiles for `nq` queries of `nwords` words: tile t (16 queries), word w at
// offset (t * nwords + w) * kAmxTileBytes.
inline int64_t amx_query_tile_bytes(int64_t nq, int64_t nwords) {
  return amx_query_pairs(nq) * 2 * nwords * kAmxTileBytes;
}

// Scratch sizes of the AMX kernel: two A tiles of expanded codes per word, and one int32 limit
// per (padded) query.
inline int64_t amx_code_tile_bytes(int64_t nwords) { return 2 * nwords * kAmxTileBytes; }
inline int64_t amx_limit_count(int64_t nq) { return amx_query_pairs(nq) * 32; }

// q: nq x nwords words. out: amx_query_tile_bytes(nq, nwords) bytes. popcounts: nq entries.
inline void to_amx_query_tiles(const uint64_t* q, int64_t nq, int64_t nwords, int8_t* out,
                               int32_t* popcounts) {
  std::memset(out, 0, static_cast<size_t>(amx_query_tile_bytes(nq, nwords)));
  for (int64_t u = 0; u < nq; ++u) {
    int32_t ones = 0;
    for (int64_t w = 0; w < nwords; ++w) {
      const uint64_t word = q[u * nwords + w];
      ones += __builtin_popcountll(word);
      int8_t* tile = out + ((u / 16) * nwords + w) * kAmxTileBytes;
      for (int k = 0; k < 64; ++k)
        tile[(k / 4) * 64 + (u % 16) * 4 + k % 4] = ((word >> k) & 1) ? 1 : -1;
    }
    popcounts[u] = ones;
  }
}

}  // namespace cpu
}  // namespace pyhash
