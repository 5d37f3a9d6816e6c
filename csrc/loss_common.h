// Shared preparation for the fused exponentiated pairwise loss (CPU and CUDA glue).
//
// The kernels see: relaxed codes u [n, B] and v [m, B] in the accumulation type (float32, or
// float64 for float64 inputs), labels as int64 ids [n] / [m] or as multi-hot bit masks
// [n, words] / [m, words] (int64 words), and the per-pair constants below.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <string>

namespace pyhash {

enum class Surrogate { Tanh, Bilinear, Cosine };
enum class Weighting { Uniform, Balanced };

inline Surrogate parse_surrogate(const std::string& name) {
  if (name == "tanh") return Surrogate::Tanh;
  if (name == "bilinear") return Surrogate::Bilinear;
  if (name == "cosine") return Surrogate::Cosine;
  TORCH_CHECK(false, "surrogate must be 'tanh', 'bilinear' or 'cosine', got '", name, "'");
}

inline Weighting parse_weighting(const std::string& name) {
  if (name == "uniform") return Weighting::Uniform;
  if (name == "balanced") return Weighting::Balanced;
  TORCH_CHECK(false, "weighting must be 'uniform' or 'balanced', got '", name, "'");
}

// Per-pair constants of one call. Pair (i, j) contributes w * exp(e) to the loss, with
// e = -lam * s * a (clamped to [-clamp, clamp] when `clamped`), a = u_i . v_j / B, and
// w = weight_similar or weight_dissimilar (already divided by the total weight).
struct PairConstants {
  double lam;
  double clamp;
  bool clamped;
  bool symmetric;  // skip i == j
  double weight_similar;
  double weight_dissimilar;
  int64_t nbits;
};

struct LossInputs {
  at::Tensor u, v;              // [n, B], [m, B], accumulation dtype, contiguous
  at::Tensor labels_u, labels_v;  // int64 [n] / [m], or bit masks int64 [n, w] / [m, w]
  bool multilabel;
  bool symmetric;
};

// Everything an op needs before its kernels run: parsed options, kernel inputs, pair count.
struct LossSetup {
  Surrogate surrogate;
  Weighting weighting;
  LossInputs inputs;
  int64_t pairs;  // n (n - 1) symmetric, n m asymmetric
};

LossSetup setup_loss(const at::Tensor& z, const at::Tensor& labels,
                     const c10::optional<at::Tensor>& y, const c10::optional<at::Tensor>& y_labels,
                     double lam, double beta, double clamp, c10::string_view surrogate,
                     c10::string_view weighting, bool y_is_codes);

// (grad_z, grad_y) in z's dtype from dL/du and dL/dv (grad_v undefined in the symmetric form,
// where grad_u must already hold both sides); empty tensors when grad_u is undefined.
std::tuple<at::Tensor, at::Tensor> finish_gradients(const at::Tensor& grad_u,
                                                    const at::Tensor& grad_v, const at::Tensor& z,
                                                    const c10::optional<at::Tensor>& y,
                                                    double beta, Surrogate surrogate,
                                                    bool y_is_codes);

// Checks user inputs and builds the kernel inputs (everything O((n + m) B)).
LossInputs prepare_loss_inputs(const at::Tensor& z, const at::Tensor& labels,
                               const c10::optional<at::Tensor>& y,
                               const c10::optional<at::Tensor>& y_labels, double beta,
                               Surrogate surrogate, bool y_is_codes);

// Weights from the pair counts; total weight is normalised to 1 (0 pairs: both weights 0).
PairConstants pair_constants(int64_t pairs, int64_t similar_pairs, double lam, double clamp,
                             Surrogate surrogate, Weighting weighting, bool symmetric,
                             int64_t nbits);

// Gradient with respect to z from the gradient with respect to u = phi(z), in z's dtype.
at::Tensor surrogate_backward(const at::Tensor& grad_u, const at::Tensor& z, double beta,
                              Surrogate surrogate);

}  // namespace pyhash
