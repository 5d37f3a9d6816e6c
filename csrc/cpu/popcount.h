// Popcount distance blocks for the CPU Hamming kernels, one implementation per instruction set.
//
// These files hold no torch headers and no inline templates shared with other translation units:
// each ISA file is compiled with its own target options and must not leak wider instructions into
// code that runs on older CPUs.
#pragma once

#include <cstdint>

namespace pyhash {
namespace cpu {

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

// Distances from one query to `count` database codes held word-major: word w of code i is
// block[w * stride + i]. q holds `nwords` 64-bit words. Writes out[0..count) and returns the
// smallest distance written (UINT64_MAX when count == 0).
using BlockDistanceFn = uint64_t (*)(const uint64_t* q, int64_t nwords, const uint64_t* block,
                                     int64_t stride, int64_t count, uint64_t* out);

// Screens `count` codes (word-major, as above) against `nq` queries (q: nq x nwords words) in
// groups of kScreenCodes codes. For each (query u, group g) whose smallest distance may be below
// thresholds[u], appends (u << 32) | g to `hits` and returns how many were
// appended (at most nq * ceil(count / kScreenCodes)); each query's groups come in increasing
// order. May report groups that turn out to hold no
// code below the threshold; never misses one that does.
constexpr int64_t kScreenCodes = 64;
using ScreenFn = int64_t (*)(const uint64_t* q, int64_t nq, int64_t nwords, const uint64_t* block,
                             int64_t stride, int64_t count, const uint64_t* thresholds,
                             uint64_t* hits);

ScreenFn screen_avx512(int64_t nwords);
ScreenFn screen_fn(Isa isa, int64_t nwords);

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
