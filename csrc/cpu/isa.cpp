// Run-time choice of the popcount implementation.
#include <atomic>
#include <cstdlib>

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "cpu/popcount.h"

namespace pyhash {
namespace cpu {
namespace {

// AMX-TILE and AMX-INT8 in CPUID, and the Linux kernel's permission to use tile data (asked once
// for the whole process, as oneDNN does; a kernel without AMX support refuses). PYHASH_NO_AMX=1
// skips both, so pyhash never asks.
bool amx_usable() {
#if defined(__x86_64__) && defined(__linux__)
  static const bool usable = [] {
    const char* off = std::getenv("PYHASH_NO_AMX");
    if (off != nullptr && off[0] != '\0' && off[0] != '0') return false;
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    const bool tile = edx & (1u << 24), int8 = edx & (1u << 25);
    if (!tile || !int8) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return usable;
#else
  return false;
#endif
}

bool supported(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
    case Isa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
    case Isa::Amx:
      return supported(Isa::Avx512) && __builtin_cpu_supports("avx512bw") && amx_usable();
  }
  return false;
#else
  return isa == Isa::Scalar;
#endif
}

std::atomic<int>& active() {
  static std::atomic<int> value{static_cast<int>(best_supported_isa())};
  return value;
}

}  // namespace

Isa best_supported_isa() {
  if (supported(Isa::Amx)) return Isa::Amx;
  if (supported(Isa::Avx512)) return Isa::Avx512;
  if (supported(Isa::Avx2)) return Isa::Avx2;
  return Isa::Scalar;
}

Isa active_isa() { return static_cast<Isa>(active().load()); }

bool set_isa(Isa isa) {
  if (!supported(isa)) return false;
  active().store(static_cast<int>(isa));
  return true;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512_vpopcntdq";
    case Isa::Amx: return "amx_int8";
  }
  return "unknown";
}

namespace {

// Candidate search built on a block-distance function, for the ISAs without a dedicated one.
template <Isa I>
int64_t candidates_by_distances(const QuerySet& queries, const uint64_t* block, int64_t stride,
                                int64_t count, const uint64_t* thresholds, uint64_t* out) {
  const uint64_t* q = queries.words;
  const int64_t nq = queries.count, nwords = queries.nwords;
  const BlockDistanceFn distances = block_distance_fn(I, nwords);
  uint64_t d[kScreenCodes];
  int64_t n = 0;
  for (int64_t u = 0; u < nq; ++u) {
    for (int64_t begin = 0; begin < count; begin += kScreenCodes) {
      const int64_t len = count - begin < kScreenCodes ? count - begin : kScreenCodes;
      if (distances(q + u * nwords, nwords, block + begin, stride, len, d) >= thresholds[u]) continue;
      for (int64_t i = 0; i < len; ++i)
        if (d[i] < thresholds[u])
          out[n++] = (static_cast<uint64_t>(u) << 48) | (d[i] << 32) | static_cast<uint64_t>(begin + i);
    }
  }
  return n;
}

}  // namespace

// One word per code: storing the tiles costs as much as computing them, and the AVX-512 scan was
// faster (18.3 against 13.3 G distances/s, docs/search.md). From two words on, AMX ties or wins
// (128 bits: 9.0 against 9.1; 256 bits: 6.1 against 4.4).
bool amx_candidates(Isa isa, int64_t nwords) { return isa == Isa::Amx && nwords >= 2; }

CandidatesFn candidates_fn(Isa isa, int64_t nwords) {
  if (amx_candidates(isa, nwords)) return candidates_amx(nwords);
  switch (isa) {
    case Isa::Amx:
    case Isa::Avx512: return candidates_avx512(nwords);
    case Isa::Avx2: return &candidates_by_distances<Isa::Avx2>;
    case Isa::Scalar: break;
  }
  return &candidates_by_distances<Isa::Scalar>;
}

BlockDistanceFn block_distance_fn(Isa isa, int64_t nwords) {
  switch (isa) {
    case Isa::Amx:  // the AMX path computes whole distance blocks with AVX-512
    case Isa::Avx512: return block_distance_avx512(nwords);
    case Isa::Avx2: return block_distance_avx2(nwords);
    case Isa::Scalar: break;
  }
  return block_distance_scalar(nwords);
}

}  // namespace cpu
}  // namespace pyhash
