// CPU kernel of the fused exponentiated pairwise loss: loss and gradients in one blocked pass,
// never materialising an n x m matrix (extra memory: padded copies of u, v and dL/du, v
// transposed, and one m x B gradient buffer per thread).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "loss_common.h"

namespace pyhash {
namespace {


// exp for float in plain arithmetic that the compiler vectorises (about 2 ulp on [-87, 88]):
// x = n ln2 + r with |r| <= ln2 / 2, e^r by a degree-6 polynomial, 2^n built in the exponent bits.
inline float exp_vectorisable(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float n = (x * 1.44269504088896341f + shifter) - shifter;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  return p * __builtin_bit_cast(float, bits);
}
inline double exp_vectorisable(double x) { return std::exp(x); }

// Rows of u and columns (rows of v) handled together: RI x TJ pair tiles with register-blocked
// dot products, and each tile's gradients accumulated in registers kLanes bits at a time.
constexpr int64_t RI = 4;
constexpr int64_t TJ = 64;
// Rows are padded with zeros to a multiple of kLanes values, so the loops over bits are whole
// vectors (16 floats: one AVX-512 register).
constexpr int64_t kLanes = 16;
// Bytes of v per panel of bank columns (fused_loss).
constexpr int64_t kPanelBytes = 256 * 1024;

// Labels: similar(i, j) for one pair; similar_tile(i, j0, out) sets out[j] != 0 iff the pair
// (i, j0 + j) is similar, for a whole tile (j < TJ), branch-free so that it vectorises.
struct SingleLabel {
  const int64_t* u;
  const int64_t* v;
  bool similar(int64_t i, int64_t j) const { return u[i] == v[j]; }
  __attribute__((always_inline)) void similar_tile(int64_t i, int64_t j0, int64_t* out) const {
    const int64_t label = u[i];
    const int64_t* row = v + j0;
#pragma omp simd
    for (int64_t j = 0; j < TJ; ++j) out[j] = row[j] == label;
  }
};

struct MultiLabel {
  const int64_t* u;
  const int64_t* v;
  int64_t words;
  bool similar(int64_t i, int64_t j) const {
    for (int64_t w = 0; w < words; ++w)
      if (u[i * words + w] & v[j * words + w]) return true;
    return false;
  }
  __attribute__((always_inline)) void similar_tile(int64_t i, int64_t j0, int64_t* out) const {
    const int64_t* mine = u + i * words;
    const int64_t* rows = v + j0 * words;
    for (int64_t j = 0; j < TJ; ++j) out[j] = 0;
    for (int64_t w = 0; w < words; ++w) {
      const int64_t bits = mine[w];
#pragma omp simd
      for (int64_t j = 0; j < TJ; ++j) out[j] |= rows[j * words + w] & bits;
    }
  }
};

// Class ids: each row's count from the sorted bank labels, O((n + m) log m) instead of O(n m).
int64_t count_similar(SingleLabel labels, int64_t n, int64_t m, bool symmetric) {
  std::vector<int64_t> sorted(labels.v, labels.v + m);
  std::sort(sorted.begin(), sorted.end());
  int64_t total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto range = std::equal_range(sorted.begin(), sorted.end(), labels.u[i]);
    total += range.second - range.first;
  }
  return symmetric ? total - n : total;  // the symmetric form leaves out the n pairs (i, i)
}

// Sign s_ij (+1 similar, -1 not) and weight of the pairs (i, j0 + j), j < TJ. Pairs with j >=
// valid_cols or j == diagonal get weight 0.
template <typename T, typename Labels>
__attribute__((always_inline)) inline void pair_signs(const Labels& labels, int64_t i, int64_t j0,
                                                      int64_t valid_cols, int64_t diagonal, T w_sim,
                                                      T w_dis, T* sign, T* weight) {
  if (valid_cols < TJ) {  // a partial tile: no label past valid_cols is read
    for (int64_t j = 0; j < TJ; ++j) {
      const bool valid = j < valid_cols && j != diagonal;
      const bool sim = valid && labels.similar(i, j0 + j);
      sign[j] = sim ? T(1) : T(-1);
      weight[j] = valid ? (sim ? w_sim : w_dis) : T(0);
    }
    return;
  }
  int64_t similar[TJ];
  labels.similar_tile(i, j0, similar);
#pragma omp simd
  for (int64_t j = 0; j < TJ; ++j) {
    const bool valid = j != diagonal;
    const bool sim = valid & (similar[j] != 0);
    sign[j] = sim ? T(1) : T(-1);
    weight[j] = valid ? (sim ? w_sim : w_dis) : T(0);
  }
}

// Multi-hot labels: TJ bank rows at a time, branch-free.
int64_t count_similar(MultiLabel labels, int64_t n, int64_t m, bool symmetric) {
  std::vector<int64_t> per_row(n, 0);
  const int64_t whole = m / TJ * TJ;
  at::parallel_for(0, n, 16, [&](int64_t b, int64_t e) {
    int64_t shared[TJ];
    for (int64_t i = b; i < e; ++i) {
      int64_t count = 0;
      for (int64_t j0 = 0; j0 < whole; j0 += TJ) {
        labels.similar_tile(i, j0, shared);
#pragma omp simd reduction(+ : count)
        for (int64_t j = 0; j < TJ; ++j) count += shared[j] != 0;
      }
      for (int64_t j = whole; j < m; ++j) count += labels.similar(i, j);
      if (symmetric) count -= labels.similar(i, i);  // the pair (i, i) is left out
      per_row[i] = count;
    }
  });
  int64_t total = 0;
  for (int64_t c : per_row) total += c;
  return total;
}

// Coefficients of TJ pairs of one row: coef[j] = d(loss)/d(dot_j) and the loss sum of the row.
template <typename T>
__attribute__((always_inline)) inline T coefficients(const T* dots, const T* sign, const T* weight,
                                                     T* coef, T lam, T inv_bits, bool clamped,
                                                     T clamp) {
  T loss = T(0);
  if (clamped) {
#pragma omp simd reduction(+ : loss)
    for (int64_t j = 0; j < TJ; ++j) {
      const T raw = -lam * sign[j] * dots[j] * inv_bits;
      const T e = raw < -clamp ? -clamp : (raw > clamp ? clamp : raw);
      const T we = weight[j] * exp_vectorisable(e);
      loss += we;
      coef[j] = (raw < -clamp || raw > clamp) ? T(0) : -lam * sign[j] * we * inv_bits;
    }
  } else {
#pragma omp simd reduction(+ : loss)
    for (int64_t j = 0; j < TJ; ++j) {
      const T we = weight[j] * exp_vectorisable(-lam * sign[j] * dots[j] * inv_bits);
      loss += we;
      coef[j] = -lam * sign[j] * we * inv_bits;
    }
  }
  return loss;
}

// One RI x TJ tile: dot products, coefficients, loss and (optionally) gradient updates.
// u, v, grad_u and grad_v hold rows of `width` values: the B = nbits bits, then zeros up to a
// whole number of kLanes. vt is v transposed per column tile: bit b of bank row j0 + j (j < TJ)
// sits at vt[j0 * width + b * TJ + j], so a tile's width x TJ block is contiguous.
template <typename T, typename Labels>
__attribute__((always_inline)) inline T tile_impl(const T* u, const T* v, const T* vt, int64_t i0,
                                                  int64_t rows, int64_t j0, int64_t cols,
                                                  int64_t nbits, int64_t width, const Labels& labels,
                                                  const PairConstants& c, T* grad_u, T* grad_v) {
  T dots[RI][TJ];
  for (int64_t r = 0; r < RI; ++r)
#pragma omp simd
    for (int64_t j = 0; j < TJ; ++j) dots[r][j] = T(0);
  for (int64_t b = 0; b < width; ++b) {
    const T* row = vt + j0 * width + b * TJ;
    for (int64_t r = 0; r < RI; ++r) {
      const T ub = u[(i0 + (r < rows ? r : 0)) * width + b];
#pragma omp simd
      for (int64_t j = 0; j < TJ; ++j) dots[r][j] += ub * row[j];
    }
  }
  const T lam = static_cast<T>(c.lam), clamp = static_cast<T>(c.clamp);
  const T inv_bits = T(1) / static_cast<T>(nbits);
  const T w_sim = static_cast<T>(c.weight_similar), w_dis = static_cast<T>(c.weight_dissimilar);
  T coef[RI][TJ];  // 0 for pairs outside the tile (weight 0), so the updates need no bounds
  T sign[TJ], weight[TJ], loss = T(0);
  for (int64_t r = 0; r < RI; ++r) {
    const int64_t i = i0 + r;
    const int64_t valid_cols = r < rows ? cols : 0;
    const int64_t diagonal = c.symmetric ? i - j0 : -1;  // the column of the pair (i, i), if any
    pair_signs<T>(labels, i, j0, valid_cols, diagonal, w_sim, w_dis, sign, weight);
    loss += coefficients<T>(dots[r], sign, weight, coef[r], lam, inv_bits, c.clamped, clamp);
  }
  if (grad_u == nullptr) return loss;
  static_assert(RI == 4, "the updates below take four rows");
  for (int64_t b0 = 0; b0 < width; b0 += kLanes) {
    // grad_u[i0 + r] += sum_j coef[r][j] v[j0 + j], the RI partial sums held in registers
    T sums[RI][kLanes] = {};
    for (int64_t j = 0; j < cols; ++j) {
      const T* vj = v + (j0 + j) * width + b0;
      for (int64_t r = 0; r < RI; ++r) {
        const T cr = coef[r][j];
#pragma omp simd
        for (int64_t b = 0; b < kLanes; ++b) sums[r][b] += cr * vj[b];
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      T* g = grad_u + (i0 + r) * width + b0;
#pragma omp simd
      for (int64_t b = 0; b < kLanes; ++b) g[b] += sums[r][b];
    }
    // grad_v[j0 + j] += sum_r coef[r][j] u[i0 + r], the RI rows of u held in registers
    T ur[RI][kLanes];
    for (int64_t r = 0; r < RI; ++r)
#pragma omp simd
      for (int64_t b = 0; b < kLanes; ++b) ur[r][b] = u[(i0 + (r < rows ? r : 0)) * width + b0 + b];
    for (int64_t j = 0; j < cols; ++j) {
      const T c0 = coef[0][j], c1 = coef[1][j], c2 = coef[2][j], c3 = coef[3][j];
      T* g = grad_v + (j0 + j) * width + b0;
#pragma omp simd
      for (int64_t b = 0; b < kLanes; ++b) g[b] += c0 * ur[0][b] + c1 * ur[1][b] + c2 * ur[2][b] + c3 * ur[3][b];
    }
  }
  return loss;
}

// Float tiles compiled for AVX-512, AVX2 and the baseline; the loader picks one per CPU.
#define PYHASH_FLOAT_TILE(NAME, LABELS)                                                         \
  __attribute__((target_clones("avx512f", "avx2,fma", "default"))) float NAME(                \
      const float* u, const float* v, const float* vt, int64_t i0, int64_t rows, int64_t j0,    \
      int64_t cols, int64_t nbits, int64_t width, const LABELS& labels, const PairConstants& c, \
      float* grad_u, float* grad_v) {                                                            \
    return tile_impl<float>(u, v, vt, i0, rows, j0, cols, nbits, width, labels, c, grad_u, grad_v); \
  }
PYHASH_FLOAT_TILE(tile_float_single, SingleLabel)
PYHASH_FLOAT_TILE(tile_float_multi, MultiLabel)
#undef PYHASH_FLOAT_TILE

template <typename T, typename Labels>
T tile(const T* u, const T* v, const T* vt, int64_t i0, int64_t rows, int64_t j0, int64_t cols,
       int64_t nbits, int64_t width, const Labels& labels, const PairConstants& c, T* grad_u,
       T* grad_v) {
  if constexpr (std::is_same_v<T, float> && std::is_same_v<Labels, SingleLabel>) {
    return tile_float_single(u, v, vt, i0, rows, j0, cols, nbits, width, labels, c, grad_u, grad_v);
  } else if constexpr (std::is_same_v<T, float> && std::is_same_v<Labels, MultiLabel>) {
    return tile_float_multi(u, v, vt, i0, rows, j0, cols, nbits, width, labels, c, grad_u, grad_v);
  } else {
    return tile_impl<T>(u, v, vt, i0, rows, j0, cols, nbits, width, labels, c, grad_u, grad_v);
  }
}

// Rows [rows, nbits] copied to rows of `width` values, zero-padded.
template <typename T>
std::vector<T> padded_rows(const T* x, int64_t rows, int64_t nbits, int64_t width) {
  std::vector<T> out(rows * width, T(0));
  for (int64_t i = 0; i < rows; ++i) std::copy_n(x + i * nbits, nbits, out.data() + i * width);
  return out;
}

// Accumulates the loss and, if grad_u is not null, dL/du into grad_u [n, B] and dL/dv into
// grad_v [m, B] (both zeroed by the caller). Extra memory: u, v and the gradients padded to whole
// vectors, v transposed, and one m x B gradient buffer per thread.
template <typename T, typename Labels>
double fused_loss(const T* u, const T* v, int64_t n, int64_t m, int64_t nbits, Labels labels,
                  const PairConstants& c, T* grad_u, T* grad_v) {
  const int64_t width = (nbits + kLanes - 1) / kLanes * kLanes;
  const std::vector<T> up = padded_rows(u, n, nbits, width), vp = padded_rows(v, m, nbits, width);
  // v transposed per column tile and padded to whole tiles (see tile_impl), so that the dot
  // products vectorise over j and each tile reads one contiguous block. A plain [B, m] transpose
  // strides by 4m bytes from bit to bit, which maps a tile's rows onto a few L1 sets.
  const int64_t mp = (m + TJ - 1) / TJ * TJ;
  std::vector<T> vt(width * mp, T(0));
  for (int64_t j = 0; j < m; ++j)
    for (int64_t b = 0; b < nbits; ++b) vt[(j - j % TJ) * width + b * TJ + j % TJ] = v[j * nbits + b];

  // Bank columns in panels whose rows of v, vt and grad_v (about kPanelBytes each) stay in the L2
  // cache while a thread's row blocks pass over them; one sweep over all m columns per row block
  // would stream them from memory again for every block.
  const int64_t panel = std::max<int64_t>(TJ, kPanelBytes / (width * static_cast<int64_t>(sizeof(T))) / TJ * TJ);
  const int threads = at::get_num_threads();
  std::vector<double> loss_per_thread(threads, 0.0);
  std::vector<T> gu(grad_u ? n * width : 0, T(0));
  std::vector<std::vector<T>> grad_v_per_thread(grad_u ? threads : 0);
  const int64_t row_blocks = (n + RI - 1) / RI;
  at::parallel_for(0, row_blocks, 4, [&](int64_t rb_begin, int64_t rb_end) {
    const int thread = at::get_thread_num();
    T* gv = nullptr;
    if (grad_u) {
      auto& buffer = grad_v_per_thread[thread];
      if (buffer.empty()) buffer.assign(m * width, T(0));
      gv = buffer.data();
    }
    double loss = 0.0;
    for (int64_t p0 = 0; p0 < m; p0 += panel) {
      const int64_t p1 = std::min(m, p0 + panel);
      for (int64_t rb = rb_begin; rb < rb_end; ++rb) {
        const int64_t i0 = rb * RI, rows = std::min(RI, n - i0);
        for (int64_t j0 = p0; j0 < p1; j0 += TJ)
          loss += static_cast<double>(tile(up.data(), vp.data(), vt.data(), i0, rows, j0, std::min(TJ, m - j0),
                                           nbits, width, labels, c, grad_u ? gu.data() : nullptr, gv));
      }
    }
    loss_per_thread[thread] += loss;
  });

  if (grad_u) {
    for (int64_t i = 0; i < n; ++i) std::copy_n(gu.data() + i * width, nbits, grad_u + i * nbits);
    for (const auto& part : grad_v_per_thread) {
      if (part.empty()) continue;
      for (int64_t j = 0; j < m; ++j)
        for (int64_t b = 0; b < nbits; ++b) grad_v[j * nbits + b] += part[j * width + b];
    }
  }
  double total = 0.0;
  for (double l : loss_per_thread) total += l;
  return total;
}

template <typename Labels>
std::tuple<at::Tensor, at::Tensor, at::Tensor> run(const LossInputs& in, Labels labels,
                                                   const PairConstants& c, bool compute_grad) {
  const int64_t n = in.u.size(0), m = in.v.size(0), nbits = in.u.size(1);
  at::Tensor grad_u = compute_grad ? at::zeros_like(in.u) : at::Tensor();
  at::Tensor grad_v = compute_grad ? at::zeros_like(in.v) : at::Tensor();
  double loss = 0.0;
  AT_DISPATCH_FLOATING_TYPES(in.u.scalar_type(), "exp_pair_loss_cpu", [&] {
    loss = fused_loss<scalar_t>(in.u.data_ptr<scalar_t>(), in.v.data_ptr<scalar_t>(), n, m, nbits,
                                labels, c, compute_grad ? grad_u.data_ptr<scalar_t>() : nullptr,
                                compute_grad ? grad_v.data_ptr<scalar_t>() : nullptr);
  });
  return {at::scalar_tensor(loss, in.u.options()), grad_u, grad_v};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> exp_pair_loss_cpu(
    const at::Tensor& z, const at::Tensor& labels, const c10::optional<at::Tensor>& y,
    const c10::optional<at::Tensor>& y_labels, double lam, double beta, double clamp,
    c10::string_view surrogate, c10::string_view weighting, bool y_is_codes, bool compute_grad) {
  const LossSetup setup =
      setup_loss(z, labels, y, y_labels, lam, beta, clamp, surrogate, weighting, y_is_codes);
  const LossInputs& in = setup.inputs;
  const int64_t n = in.u.size(0), m = in.v.size(0), nbits = in.u.size(1);

  std::tuple<at::Tensor, at::Tensor, at::Tensor> out;
  auto dispatch = [&](auto lab) {
    int64_t similar = 0;
    if (setup.weighting == Weighting::Balanced && setup.pairs > 0)
      similar = count_similar(lab, n, m, in.symmetric);
    const PairConstants c = pair_constants(setup.pairs, similar, lam, clamp, setup.surrogate,
                                           setup.weighting, in.symmetric, nbits);
    out = run(in, lab, c, compute_grad);
  };
  if (in.multilabel) {
    dispatch(MultiLabel{in.labels_u.data_ptr<int64_t>(), in.labels_v.data_ptr<int64_t>(),
                        in.labels_u.size(1)});
  } else {
    dispatch(SingleLabel{in.labels_u.data_ptr<int64_t>(), in.labels_v.data_ptr<int64_t>()});
  }
  at::Tensor grad_u = std::get<1>(out), grad_v = std::get<2>(out);
  if (compute_grad && in.symmetric) {  // u plays both roles: add the column side to the row side
    grad_u = grad_u + grad_v;
    grad_v = at::Tensor();
  }
  auto grads = finish_gradients(grad_u, grad_v, z, y, beta, setup.surrogate, y_is_codes);
  return {std::get<0>(out).to(z.scalar_type()), std::get<0>(grads), std::get<1>(grads)};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyhash, CPU, m) { m.impl("exp_pair_loss", &exp_pair_loss_cpu); }

}  // namespace pyhash
