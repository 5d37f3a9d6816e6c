// Input checks, surrogate codes and weights for the fused loss (device-agnostic ATen code).
#include "loss_common.h"

#include <cmath>

namespace pyhash {
namespace {

at::ScalarType accumulation_type(const at::Tensor& z) {
  return z.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

at::Tensor apply_surrogate(const at::Tensor& x, double beta, Surrogate surrogate) {
  switch (surrogate) {
    case Surrogate::Tanh: return at::tanh(x * beta);
    case Surrogate::Bilinear: return x;
    case Surrogate::Cosine: {
      const at::Tensor norm = x.norm(2, {1}, /*keepdim=*/true);
      TORCH_CHECK(!(norm == 0).any().item<bool>(),
                  "the cosine surrogate needs non-zero rows, but a row of z (or y) is all zeros");
      return x * (std::sqrt(static_cast<double>(x.size(1))) / norm);
    }
  }
  return x;
}

// Multi-hot rows [n, C] -> bit masks int64 [n, ceil(C / 64)].
at::Tensor label_bits(const at::Tensor& multi_hot) {
  const int64_t n = multi_hot.size(0), classes = multi_hot.size(1);
  const int64_t words = (classes + 63) / 64;
  at::Tensor hot = (multi_hot != 0).to(at::kLong);
  hot = at::constant_pad_nd(hot, {0, words * 64 - classes}, 0).reshape({n, words, 64});
  const at::Tensor shifts = at::arange(64, hot.options());
  return at::bitwise_left_shift(hot, shifts).sum(2);  // distinct bits: the sum is an OR
}

void check_labels(const at::Tensor& labels, int64_t rows, const char* name) {
  TORCH_CHECK(labels.dim() == 1 || labels.dim() == 2, name,
              " must be int64 class ids [n] or multi-hot rows [n, C], got ", labels.dim(), "-D");
  TORCH_CHECK(labels.size(0) == rows, name, " has ", labels.size(0), " rows but its codes have ",
              rows);
  if (labels.dim() == 1) {
    TORCH_CHECK(labels.scalar_type() == at::kLong || labels.scalar_type() == at::kInt, name,
                " (class ids) must be int64, got ", labels.scalar_type());
  } else {
    TORCH_CHECK(labels.size(1) >= 1, name, " (multi-hot) must have at least one class column");
    TORCH_CHECK(labels.numel() == 0 || ((labels == 0) | (labels == 1)).all().item<bool>(), name,
                " (multi-hot) must hold only 0 and 1");
  }
}

void check_finite(const at::Tensor& x, const char* name) {
  TORCH_CHECK(at::isfinite(x).all().item<bool>(), name,
              " contains NaN or Inf values; the loss would be NaN");
}

}  // namespace

LossInputs prepare_loss_inputs(const at::Tensor& z, const at::Tensor& labels,
                               const c10::optional<at::Tensor>& y,
                               const c10::optional<at::Tensor>& y_labels, double beta,
                               Surrogate surrogate, bool y_is_codes) {
  TORCH_CHECK(z.dim() == 2, "z must be 2-D [n, B], got shape ", z.sizes());
  TORCH_CHECK(at::isFloatingType(z.scalar_type()), "z must be floating point, got ",
              z.scalar_type());
  TORCH_CHECK(z.size(1) >= 1, "z must have at least one bit column");
  TORCH_CHECK(labels.device() == z.device(), "labels are on ", labels.device(), " but z is on ",
              z.device());
  check_labels(labels, z.size(0), "labels");
  check_finite(z, "z");
  const at::ScalarType acc = accumulation_type(z);
  LossInputs in;
  in.symmetric = !y.has_value();
  in.multilabel = labels.dim() == 2;
  in.u = apply_surrogate(z.to(acc), beta, surrogate).contiguous();
  in.labels_u = in.multilabel ? label_bits(labels) : labels.to(at::kLong).contiguous();
  if (in.symmetric) {
    TORCH_CHECK(!y_labels.has_value(), "y_labels was given without y");
    in.v = in.u;
    in.labels_v = in.labels_u;
    return in;
  }
  const at::Tensor& yy = *y;
  TORCH_CHECK(y_labels.has_value(), "y was given without y_labels");
  const at::Tensor& yl = *y_labels;
  TORCH_CHECK(yy.dim() == 2 && yy.size(1) == z.size(1), "y must be [m, ", z.size(1),
              "] like z, got shape ", yy.sizes());
  TORCH_CHECK(yy.scalar_type() == z.scalar_type(), "y has dtype ", yy.scalar_type(),
              " but z has ", z.scalar_type());
  TORCH_CHECK(yy.device() == z.device() && yl.device() == z.device(), "y and y_labels must be on ",
              z.device(), " like z");
  check_labels(yl, yy.size(0), "y_labels");
  TORCH_CHECK(yl.dim() == labels.dim(), "labels and y_labels must be the same kind (class ids ",
              "or multi-hot), got ", labels.dim(), "-D and ", yl.dim(), "-D");
  if (in.multilabel)
    TORCH_CHECK(yl.size(1) == labels.size(1), "labels have ", labels.size(1),
                " classes but y_labels have ", yl.size(1));
  check_finite(yy, "y");
  in.v = (y_is_codes ? yy.to(acc) : apply_surrogate(yy.to(acc), beta, surrogate)).contiguous();
  in.labels_v = in.multilabel ? label_bits(yl) : yl.to(at::kLong).contiguous();
  return in;
}

PairConstants pair_constants(int64_t pairs, int64_t similar_pairs, double lam, double clamp,
                             Surrogate surrogate, Weighting weighting, bool symmetric,
                             int64_t nbits) {
  PairConstants c;
  c.lam = lam;
  c.clamp = clamp;
  c.clamped = surrogate == Surrogate::Bilinear;
  c.symmetric = symmetric;
  c.nbits = nbits;
  const int64_t dissimilar_pairs = pairs - similar_pairs;
  c.weight_similar = c.weight_dissimilar = 0.0;
  if (pairs == 0) return c;
  if (weighting == Weighting::Uniform) {
    c.weight_similar = c.weight_dissimilar = 1.0 / static_cast<double>(pairs);
  } else if (similar_pairs == 0) {
    c.weight_dissimilar = 1.0 / static_cast<double>(dissimilar_pairs);
  } else if (dissimilar_pairs == 0) {
    c.weight_similar = 1.0 / static_cast<double>(similar_pairs);
  } else {
    c.weight_similar = 0.5 / static_cast<double>(similar_pairs);
    c.weight_dissimilar = 0.5 / static_cast<double>(dissimilar_pairs);
  }
  return c;
}

at::Tensor surrogate_backward(const at::Tensor& grad_u, const at::Tensor& z, double beta,
                              Surrogate surrogate) {
  const at::ScalarType acc = grad_u.scalar_type();
  const at::Tensor zz = z.to(acc);
  at::Tensor grad;
  switch (surrogate) {
    case Surrogate::Tanh: {
      const at::Tensor t = at::tanh(zz * beta);
      grad = grad_u * (beta * (1 - t * t));
      break;
    }
    case Surrogate::Bilinear: grad = grad_u; break;
    case Surrogate::Cosine: {
      // u = sqrt(B) z / |z|  =>  dL/dz = sqrt(B) / |z| (g - zhat (zhat . g))
      const at::Tensor norm = zz.norm(2, {1}, true);
      const at::Tensor zhat = zz / norm;
      const at::Tensor along = (zhat * grad_u).sum(1, true);
      grad = (grad_u - zhat * along) * (std::sqrt(static_cast<double>(z.size(1))) / norm);
      break;
    }
  }
  return grad.to(z.scalar_type());
}

LossSetup setup_loss(const at::Tensor& z, const at::Tensor& labels,
                     const c10::optional<at::Tensor>& y, const c10::optional<at::Tensor>& y_labels,
                     double lam, double beta, double clamp, c10::string_view surrogate,
                     c10::string_view weighting, bool y_is_codes) {
  LossSetup setup;
  setup.surrogate = parse_surrogate(std::string(surrogate));
  setup.weighting = parse_weighting(std::string(weighting));
  TORCH_CHECK(std::isfinite(lam), "lam must be finite, got ", lam);
  TORCH_CHECK(std::isfinite(beta) && beta > 0, "beta must be finite and > 0, got ", beta);
  TORCH_CHECK(std::isfinite(clamp) && clamp > 0, "clamp must be finite and > 0, got ", clamp);
  setup.inputs = prepare_loss_inputs(z, labels, y, y_labels, beta, setup.surrogate, y_is_codes);
  const int64_t n = setup.inputs.u.size(0), m = setup.inputs.v.size(0);
  setup.pairs = setup.inputs.symmetric ? n * (n - 1) : n * m;
  return setup;
}

std::tuple<at::Tensor, at::Tensor> finish_gradients(const at::Tensor& grad_u,
                                                    const at::Tensor& grad_v, const at::Tensor& z,
                                                    const c10::optional<at::Tensor>& y,
                                                    double beta, Surrogate surrogate,
                                                    bool y_is_codes) {
  at::Tensor grad_z = at::empty({0}, z.options());
  at::Tensor grad_y = at::empty({0}, z.options());
  if (!grad_u.defined()) return {grad_z, grad_y};
  grad_z = surrogate_backward(grad_u, z, beta, surrogate).contiguous();
  if (grad_v.defined()) {
    grad_y = (y_is_codes ? grad_v.to(z.scalar_type()) : surrogate_backward(grad_v, *y, beta, surrogate))
                 .contiguous();
  }
  return {grad_z, grad_y};
}

}  // namespace pyhash
