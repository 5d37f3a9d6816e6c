// Run-time choice of the popcount implementation.
#include <atomic>

#include "cpu/popcount.h"

namespace pyhash {
namespace cpu {
namespace {

bool supported(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
    case Isa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
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
  }
  return "unknown";
}

namespace {

// Candidate search built on a block-distance function, for the ISAs without a dedicated one.
template <Isa I>
int64_t candidates_by_distances(const uint64_t* q, int64_t nq, int64_t nwords,
                                const uint64_t* block, int64_t stride, int64_t count,
                                const uint64_t* thresholds, uint64_t* out) {
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

CandidatesFn candidates_fn(Isa isa, int64_t nwords) {
  switch (isa) {
    case Isa::Avx512: return candidates_avx512(nwords);
    case Isa::Avx2: return &candidates_by_distances<Isa::Avx2>;
    case Isa::Scalar: break;
  }
  return &candidates_by_distances<Isa::Scalar>;
}

BlockDistanceFn block_distance_fn(Isa isa, int64_t nwords) {
  switch (isa) {
    case Isa::Avx512: return block_distance_avx512(nwords);
    case Isa::Avx2: return block_distance_avx2(nwords);
    case Isa::Scalar: break;
  }
  return block_distance_scalar(nwords);
}

}  // namespace cpu
}  // namespace pyhash
