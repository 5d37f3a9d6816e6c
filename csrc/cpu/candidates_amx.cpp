// AMX-INT8 candidate search: Hamming distances of 32 codes x 32 queries per step as int8 tile
// products (layout and algebra in cpu/amx_layout.h), screened by AVX-512.
//
// One step: expand 32 codes to two A tiles (per word), multiply them with the two B tiles of a
// query pair (four C tiles, accumulated over the words), store C, and take the minimum over the
// 32 codes for each query. Only a query pair whose minimum passes a limit has its stored rows
// read again to emit candidates. The stores of step s are screened after the tile products of step
// s + 1 are issued, so the tile unit and the vector units overlap.
//
// The caller must hold the Linux permission for AMX tile data (cpu/isa.cpp asks for it).
#pragma GCC target("avx512f,avx512bw,amx-tile,amx-int8")
// GCC 12's own intrinsic headers trip these (an "undefined" pass-through operand), not our code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu/popcount.h"

namespace pyhash {
namespace cpu {
namespace {

// Palette 1, every tile 16 rows x 64 bytes (int32 C tiles: 16 x 16).
struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

// Tiles: 0-3 C (code tile a, query tile b at 2a + b), 4-5 A (codes), 6-7 B (queries).
// C tiles of one step, and which codes and queries they hold.
struct alignas(64) StepResult {
  int32_t c[4][16][16];
  int64_t first_code;  // codes first_code .. first_code + rows[0] + rows[1] - 1
  int rows[2];         // valid codes in code tile 0 and 1
  int64_t pair;        // queries 32 * pair .. 32 * pair + 31
};

// Expands codes [first, first + 32) (missing codes as zero) into the two A tiles of each word.
inline void expand_codes(const uint64_t* block, int64_t stride, int64_t count, int64_t nwords,
                         int64_t first, int8_t* tiles) {
  for (int a = 0; a < 2; ++a)
    for (int r = 0; r < 16; ++r) {
      const int64_t i = first + a * 16 + r;
      for (int64_t w = 0; w < nwords; ++w) {
        const uint64_t word = i < count ? block[w * stride + i] : 0;
        _mm512_store_si512(tiles + (a * nwords + w) * kAmxTileBytes + r * 64,
                           _mm512_movm_epi8(_cvtu64_mask64(word)));
      }
    }
}

inline __m512i rows_min(const int32_t (*rows)[16], int n) {
  if (n == 16) {
    __m512i m0 = _mm512_load_si512(rows[0]), m1 = _mm512_load_si512(rows[1]);
    __m512i m2 = _mm512_load_si512(rows[2]), m3 = _mm512_load_si512(rows[3]);
    for (int r = 4; r < 16; r += 4) {
      m0 = _mm512_min_epi32(m0, _mm512_load_si512(rows[r]));
      m1 = _mm512_min_epi32(m1, _mm512_load_si512(rows[r + 1]));
      m2 = _mm512_min_epi32(m2, _mm512_load_si512(rows[r + 2]));
      m3 = _mm512_min_epi32(m3, _mm512_load_si512(rows[r + 3]));
    }
    return _mm512_min_epi32(_mm512_min_epi32(m0, m1), _mm512_min_epi32(m2, m3));
  }
  __m512i m = _mm512_set1_epi32(INT32_MAX);
  for (int r = 0; r < n; ++r) m = _mm512_min_epi32(m, _mm512_load_si512(rows[r]));
  return m;
}

// Appends the candidates of a finished step; returns the new output count.
inline int64_t screen_step(const StepResult& s, const QuerySet& q, uint64_t* out, int64_t n) {
  for (int b = 0; b < 2; ++b) {
    const int64_t tile_query = s.pair * 32 + b * 16;
    const __m512i limit = _mm512_loadu_si512(q.limits + tile_query);
    const __m512i smallest = _mm512_min_epi32(rows_min(s.c[b], s.rows[0]), rows_min(s.c[2 + b], s.rows[1]));
    if (!_mm512_cmplt_epi32_mask(smallest, limit)) continue;
    // Rare: emit the codes of this step below each query's limit, in code order.
    for (int a = 0; a < 2; ++a)
      for (int r = 0; r < s.rows[a]; ++r) {
        __mmask16 below = _mm512_cmplt_epi32_mask(_mm512_load_si512(s.c[2 * a + b][r]), limit);
        const uint64_t code = static_cast<uint64_t>(s.first_code + a * 16 + r);
        while (below) {
          const int lane = __builtin_ctz(below);
          below = static_cast<__mmask16>(below & (below - 1));
          const int64_t u = tile_query + lane;
          const uint64_t d = static_cast<uint64_t>(s.c[2 * a + b][r][lane] + q.popcounts[u]);
          out[n++] = (static_cast<uint64_t>(u) << 48) | (d << 32) | code;
        }
      }
  }
  return n;
}

int64_t candidates(const QuerySet& q, const uint64_t* block, int64_t stride, int64_t count,
                   const uint64_t* thresholds, uint64_t* out) {
  const int64_t nwords = q.nwords;
  const int64_t pairs = (q.count + 31) / 32;
  // d < t  <=>  C < t - |q|. Padding queries get a limit no C can be below.
  for (int64_t u = 0; u < pairs * 32; ++u) {
    const uint64_t t = u < q.count ? thresholds[u] : 0;
    q.limits[u] = u < q.count ? static_cast<int32_t>(t < (1u << 20) ? t : (1u << 20)) - q.popcounts[u]
                              : INT32_MIN;
  }

  const TileConfig config;
  _tile_loadconfig(&config);
  StepResult results[2];
  int pending = -1;  // index in results of the step not screened yet
  int64_t n = 0;
  for (int64_t first = 0; first < count; first += 32) {
    // The block comes from memory once; fetch the codes two steps ahead while the tiles work.
    if (first + 64 < count)
      for (int64_t w = 0; w < nwords; ++w)
        for (int line = 0; line < 4; ++line)
          _mm_prefetch(reinterpret_cast<const char*>(block + w * stride + first + 64 + 8 * line), _MM_HINT_T0);
    expand_codes(block, stride, count, nwords, first, q.code_tiles);
    for (int64_t pair = 0; pair < pairs; ++pair) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int64_t w = 0; w < nwords; ++w) {
        _tile_loadd(4, q.code_tiles + w * kAmxTileBytes, 64);
        _tile_loadd(5, q.code_tiles + (nwords + w) * kAmxTileBytes, 64);
        _tile_loadd(6, q.tiles + ((2 * pair) * nwords + w) * kAmxTileBytes, 64);
        _tile_loadd(7, q.tiles + ((2 * pair + 1) * nwords + w) * kAmxTileBytes, 64);
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
      }
      StepResult& s = results[pending == 0 ? 1 : 0];
      _tile_stored(0, s.c[0], 64);
      _tile_stored(1, s.c[1], 64);
      _tile_stored(2, s.c[2], 64);
      _tile_stored(3, s.c[3], 64);
      s.first_code = first;
      s.rows[0] = count - first >= 16 ? 16 : static_cast<int>(count - first);
      s.rows[1] = count - first >= 32 ? 16 : (count - first > 16 ? static_cast<int>(count - first - 16) : 0);
      s.pair = pair;
      if (pending >= 0) n = screen_step(results[pending], q, out, n);
      pending = &s == &results[0] ? 0 : 1;
    }
  }
  if (pending >= 0) n = screen_step(results[pending], q, out, n);
  _tile_release();
  return n;
}

}  // namespace

// Any word count works; cpu/isa.cpp routes only two or more words here (amx_candidates).
CandidatesFn candidates_amx(int64_t /*nwords*/) { return &candidates; }

}  // namespace cpu
}  // namespace pyhash
