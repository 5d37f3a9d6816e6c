// CPU kernel of the fused exponentiated pairwise loss: loss and gradients in one blocked pass,
// never materialising an n x m matrix (extra memory: v transposed plus one m x B gradient buffer
// per thread).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "loss_common.h"

namespace pyhash {
namespace {

constexpr int64_t kRowsPerTask = 16;
constexpr int64_t kColsPerTile = 128;

// exp for float, written so that the compiler vectorises it (about 2 ulp on [-87, 88]).
inline float exp_vectorisable(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = std::nearbyint(x * 1.44269504088896341f);
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}
inline double exp_vectorisable(double x) { return std::exp(x); }

struct SingleLabel {
  const int64_t* u;
  const int64_t* v;
  bool similar(int64_t i, int64_t j) const { return u[i] == v[j]; }
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
};

template <typename Labels>
int64_t count_similar(Labels labels, int64_t n, int64_t m, bool symmetric) {
  std::vector<int64_t> per_row(n, 0);
  at::parallel_for(0, n, 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      int64_t count = 0;
      for (int64_t j = 0; j < m; ++j) count += (labels.similar(i, j) && !(symmetric && i == j));
      per_row[i] = count;
    }
  });
  int64_t total = 0;
  for (int64_t c : per_row) total += c;
  return total;
}

// Accumulates the loss and, if grad_u is not null, dL/du into grad_u [n, B] and dL/dv into
// grad_v [m, B] (both zeroed by the caller).
template <typename T, typename Labels>
double fused_loss(const T* u, const T* v, int64_t n, int64_t m, int64_t nbits, Labels labels,
                  const PairConstants& c, T* grad_u, T* grad_v) {
  // v transposed ([B, m]) so that the dot products of one u row vectorise over j.
  std::vector<T> vt(nbits * m);
  for (int64_t j = 0; j < m; ++j)
    for (int64_t b = 0; b < nbits; ++b) vt[b * m + j] = v[j * nbits + b];

  const int threads = at::get_num_threads();
  std::vector<double> loss_per_thread(threads, 0.0);
  std::vector<std::vector<T>> grad_v_per_thread(grad_u ? threads : 0);
  const T lam = static_cast<T>(c.lam), clamp = static_cast<T>(c.clamp);
  const T inv_bits = T(1) / static_cast<T>(nbits);
  const T w_sim = static_cast<T>(c.weight_similar), w_dis = static_cast<T>(c.weight_dissimilar);

  at::parallel_for(0, (n + kRowsPerTask - 1) / kRowsPerTask, 1, [&](int64_t tb, int64_t te) {
    const int thread = at::get_thread_num();
    std::vector<T>* gv = nullptr;
    if (grad_u) {
      gv = &grad_v_per_thread[thread];
      if (gv->empty()) gv->assign(m * nbits, T(0));
    }
    std::vector<T> dots(kColsPerTile), coef(kColsPerTile);
    double loss = 0.0;
    for (int64_t task = tb; task < te; ++task) {
      const int64_t i_end = std::min(n, (task + 1) * kRowsPerTask);
      for (int64_t i = task * kRowsPerTask; i < i_end; ++i) {
        const T* ui = u + i * nbits;
        for (int64_t j0 = 0; j0 < m; j0 += kColsPerTile) {
          const int64_t cols = std::min(kColsPerTile, m - j0);
          for (int64_t j = 0; j < cols; ++j) dots[j] = T(0);
          for (int64_t b = 0; b < nbits; ++b) {
            const T ub = ui[b];
            const T* row = vt.data() + b * m + j0;
#pragma omp simd
            for (int64_t j = 0; j < cols; ++j) dots[j] += ub * row[j];
          }
          T tile_loss = T(0);
#pragma omp simd reduction(+ : tile_loss)
          for (int64_t j = 0; j < cols; ++j) {
            const bool sim = labels.similar(i, j0 + j);
            const T s = sim ? T(1) : T(-1);
            const T w = (c.symmetric && i == j0 + j) ? T(0) : (sim ? w_sim : w_dis);
            T e = -lam * s * dots[j] * inv_bits;
            T pass = T(1);
            if (c.clamped) {
              pass = (e < -clamp || e > clamp) ? T(0) : T(1);
              e = e < -clamp ? -clamp : (e > clamp ? clamp : e);
            }
            const T we = w * exp_vectorisable(e);
            tile_loss += we;
            coef[j] = -lam * s * we * inv_bits * pass;
          }
          loss += static_cast<double>(tile_loss);
          if (!grad_u) continue;
          T* gui = grad_u + i * nbits;
          for (int64_t j = 0; j < cols; ++j) {
            const T cj = coef[j];
            if (cj == T(0)) continue;
            const T* vj = v + (j0 + j) * nbits;
            T* gvj = gv->data() + (j0 + j) * nbits;
#pragma omp simd
            for (int64_t b = 0; b < nbits; ++b) {
              gui[b] += cj * vj[b];
              gvj[b] += cj * ui[b];
            }
          }
        }
      }
    }
    loss_per_thread[thread] += loss;
  });

  if (grad_u) {
    for (const auto& part : grad_v_per_thread) {
      if (part.empty()) continue;
      for (int64_t k = 0; k < m * nbits; ++k) grad_v[k] += part[k];
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
    c10::string_view surrogate_name, c10::string_view weighting_name, bool y_is_codes,
    bool compute_grad) {
  const Surrogate surrogate = parse_surrogate(std::string(surrogate_name));
  const Weighting weighting = parse_weighting(std::string(weighting_name));
  TORCH_CHECK(clamp > 0, "clamp must be > 0, got ", clamp);
  const LossInputs in = prepare_loss_inputs(z, labels, y, y_labels, beta, surrogate, y_is_codes);
  const int64_t n = in.u.size(0), m = in.v.size(0), nbits = in.u.size(1);
  const int64_t pairs = in.symmetric ? n * (n - 1) : n * m;

  std::tuple<at::Tensor, at::Tensor, at::Tensor> out;
  auto dispatch = [&](auto lab) {
    int64_t similar = 0;
    if (weighting == Weighting::Balanced && pairs > 0) similar = count_similar(lab, n, m, in.symmetric);
    const PairConstants c = pair_constants(pairs, similar, lam, clamp, surrogate, weighting,
                                           in.symmetric, nbits);
    out = run(in, lab, c, compute_grad);
  };
  if (in.multilabel) {
    dispatch(MultiLabel{in.labels_u.data_ptr<int64_t>(), in.labels_v.data_ptr<int64_t>(),
                        in.labels_u.size(1)});
  } else {
    dispatch(SingleLabel{in.labels_u.data_ptr<int64_t>(), in.labels_v.data_ptr<int64_t>()});
  }

  at::Tensor loss = std::get<0>(out).to(z.scalar_type());
  at::Tensor grad_z = at::empty({0}, z.options());
  at::Tensor grad_y = at::empty({0}, z.options());
  if (compute_grad) {
    at::Tensor grad_u = std::get<1>(out);
    if (in.symmetric) {
      grad_u = grad_u + std::get<2>(out);
    } else {
      grad_y = y_is_codes ? std::get<2>(out).to(z.scalar_type())
                          : surrogate_backward(std::get<2>(out), *y, beta, surrogate);
    }
    grad_z = surrogate_backward(grad_u, z, beta, surrogate).contiguous();
    if (grad_y.numel()) grad_y = grad_y.contiguous();
  }
  return {loss, grad_z, grad_y};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyhash, CPU, m) { m.impl("exp_pair_loss", &exp_pair_loss_cpu); }

}  // namespace pyhash
