// Popcount distance blocks for the CPU Hamming kernels, one implementation per instruction set.
//
// These files hold no torch headers and no inline templates shared with other translation units:
// each ISA file is compiled with its own target options and must not leak wider instructions into
// code that runs on older CPUs.
#pragma once

#include <cstdint>

namespace pyhash {
namespace cpu {

// Amx: AVX-512 VPOPCNTDQ plus AMX-INT8 tiles for the candidate search (cpu/candidates_amx.cpp).
enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2, Amx = 3 };

// Distances from one query to `count` database codes held word-major: word w of code i is
// block[w * stride + i]. q holds `nwords` 64-bit words. Writes out[0..count) and returns the
// smallest distance written (UINT64_MAX when count == 0).
using BlockDistanceFn = uint64_t (*)(const uint64_t* q, int64_t nwords, const uint64_t* block,
                                     int64_t stride, int64_t count, uint64_t* out);

// Bytes of one AMX tile (16 rows x 64 bytes); the layout is in cpu/amx_layout.h.
constexpr int64_t kAmxTileBytes = 1024;

// A group of queries, prepared once for candidate searches over many database blocks.
struct QuerySet {
  const uint64_t* words;  // count x nwords 64-bit words
  int64_t count;
  int64_t nwords;
  // Isa::Amx only (null otherwise), laid out by cpu/amx_layout.h: the queries as int8 B tiles
  // and their popcounts (read only), and scratch for two A tiles of codes per word and for the
  // per-query limits.
  const int8_t* tiles = nullptr;
  const int32_t* popcounts = nullptr;
  int8_t* code_tiles = nullptr;
  int32_t* limits = nullptr;
};

// Finds every (query u, code i) with distance d < thresholds[u] among `count` codes held
// word-major (as above). Appends (u << 48) | (d << 32) | i to `out` (room for q.count * count
// entries), each query's codes in increasing i, and returns how many were appended.
// The popcount versions screen codes in groups of kScreenCodes by their minimum distance first.
constexpr int64_t kScreenCodes = 256;
using CandidatesFn = int64_t (*)(const QuerySet& q, const uint64_t* block, int64_t stride,
                                 int64_t count, const uint64_t* thresholds, uint64_t* out);

CandidatesFn candidates_avx512(int64_t nwords);
CandidatesFn candidates_amx(int64_t nwords);
CandidatesFn candidates_fn(Isa isa, int64_t nwords);
// Whether candidates_fn(isa, nwords) is the AMX kernel (which needs QuerySet's AMX fields).
bool amx_candidates(Isa isa, int64_t nwords);

BlockDistanceFn block_distance_scalar(int64_t nwords);
BlockDistanceFn block_distance_avx2(int64_t nwords);
BlockDistanceFn block_distance_avx512(int64_t nwords);

// The best ISA this CPU supports, lowered by set_isa() (used by tests to cover every path).
Isa best_supported_isa();
Isa active_isa();
// Returns false if `isa` is not supported by this CPU (the active ISA is then unchanged).
bool set_isa(Isa isa);
const char* isa_name(Isa isa);

BlockDistanceFn block_distance_fn(Isa isa, int64_t nwords);

}  // namespace cpu
}  // namespace pyhash
