// Input checks and shared helpers for the Hamming ops (CPU and CUDA glue).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace pyhash {

// Largest code width: 4096 bits.
constexpr int64_t kMaxCodeBytes = 512;
// Packed (distance, position) keys keep the position in the low 40 bits.
constexpr int kPositionBits = 40;
constexpr int64_t kMaxDatabaseSize = (int64_t(1) << kPositionBits) - 1;

inline void check_codes(const at::Tensor& codes, const char* name) {
  TORCH_CHECK(codes.dim() == 2, name, " must be a 2-D uint8 tensor [N, nbits/8], got ", codes.dim(),
              "-D");
  TORCH_CHECK(codes.scalar_type() == at::kByte, name, " must have dtype uint8, got ",
              codes.scalar_type());
  TORCH_CHECK(codes.size(1) >= 1 && codes.size(1) <= kMaxCodeBytes, name,
              " must have 1 to 512 bytes per code (8 to 4096 bits), got ", codes.size(1));
}

inline void check_pair(const at::Tensor& queries, const at::Tensor& database) {
  check_codes(queries, "queries");
  check_codes(database, "database");
  TORCH_CHECK(queries.size(1) == database.size(1), "queries have ", queries.size(1) * 8,
              " bits per code but the database has ", database.size(1) * 8);
  TORCH_CHECK(queries.device() == database.device(), "queries are on ", queries.device(),
              " but the database is on ", database.device());
  TORCH_CHECK(database.size(0) <= kMaxDatabaseSize, "database holds more than 2^40 codes");
}

// Codes as 64-bit words: contiguous, 64-byte aligned (vector loads must not straddle cache
// lines), each row zero-padded to a multiple of 8 bytes (zero padding adds nothing to a Hamming
// distance). Copies only when the input is not already in that form.
inline at::Tensor as_word_rows(const at::Tensor& codes) {
  at::Tensor c = codes.contiguous();
  const int64_t width = c.size(1);
  const int64_t padded = (width + 7) / 8 * 8;
  if (padded != width) c = at::constant_pad_nd(c, {0, padded - width}, 0);
  if (reinterpret_cast<uintptr_t>(c.data_ptr()) % 64 != 0) c = c.clone();
  return c;
}

}  // namespace pyhash
