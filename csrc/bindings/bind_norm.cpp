// Bindings for the normalisation kernels (norm/norm.hpp): batch_norm_*, layer_norm_*.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "common/dispatch.hpp"

namespace pydl::bind {
namespace {

// x (N, C, *spatial): returns (N, C, S).
void nc_s(const py::array& x, int64_t& n, int64_t& c, int64_t& s, const char* op) {
  if (x.ndim() < 2) {
    throw py::value_error(std::string(op) + ": x must be (N, C) or (N, C, *spatial), got shape " +
                          shape_str(x));
  }
  n = x.shape(0);
  c = x.shape(1);
  s = 1;
  for (py::ssize_t i = 2; i < x.ndim(); ++i) s *= x.shape(i);
}

py::tuple batch_norm_forward(py::handle x_obj, py::handle w_obj, py::handle b_obj,
                             py::handle rm_obj, py::handle rv_obj, bool training,
                             double momentum, double eps, py::handle count_obj,
                             bool cumulative) {
  const char* op = "batch_norm_forward";
  const py::array x_in = require_array(x_obj, op, "x");
  const DType dt = float_dtype(x_in, op, "x");
  int64_t n, c, s;
  nc_s(x_in, n, c, s, op);
  const py::object w = optional_vector(w_obj, c, dt, op, "weight");
  const py::object b = optional_vector(b_obj, c, dt, op, "bias");
  if (rm_obj.is_none() != rv_obj.is_none()) {
    throw py::value_error(std::string(op) + ": pass both running_mean and running_var, or "
                          "neither");
  }
  py::object rm = py::none(), rv = py::none();
  if (!rm_obj.is_none()) {
    rm = inout(rm_obj, Shape{c}, dt, op, "running_mean");
    rv = inout(rv_obj, Shape{c}, dt, op, "running_var");
  }
  if (!training && rm.is_none()) {
    throw py::value_error(std::string(op) + ": eval mode (training=False) needs running_mean "
                          "and running_var");
  }
  if (training && n * s <= 1) {
    throw py::value_error(std::string(op) + ": expected more than 1 value per channel when "
                          "training, got input of shape " + shape_str(x_in) +
                          "; use a batch of at least 2 samples or eval mode");
  }
  require_range(momentum, 0.0, 1.0, op, "momentum");
  if (!(eps >= 0.0)) throw py::value_error(std::string(op) + ": eps must be >= 0");
  int64_t* count = nullptr;
  py::array count_arr = no_array();
  if (!count_obj.is_none()) {
    count_arr = require_array(count_obj, op, "num_batches_tracked");
    if (!py::dtype::of<int64_t>().is(count_arr.dtype())) {
      throw py::type_error(std::string(op) + ": num_batches_tracked must be an int64 array, got " +
                           std::string(py::str(count_arr.dtype())));
    }
    require_writable_buffer(count_arr, Shape{}, op, "num_batches_tracked");
    count = static_cast<int64_t*>(count_arr.mutable_data());
  }
  py::array y = output(py::none(), shape_of(x_in), dt, op);
  py::array mean = output(py::none(), Shape{c}, dt, op);
  py::array invstd = output(py::none(), Shape{c}, dt, op);
  const py::array x = contiguous(x_in);
  by_dtype(dt, [&](auto zero) {
    using T = decltype(zero);
    using Fn = decltype(of_dtype<T>(kernels().norm).batch_norm_forward);
    T* prm = ptr_opt<T>(rm);
    T* prv = ptr_opt<T>(rv);
    T *py_ = ptr<T>(y), *pm = ptr<T>(mean), *pi = ptr<T>(invstd);
    const T *px = cptr<T>(x), *pw = cptr_opt<T>(w), *pb = cptr_opt<T>(b);
    // The batch counter is advanced here, in the (capturable) call, not by the caller.
    nogil(
        [](Fn f, int64_t* cnt, bool cumul, double mom, T* y_, T* m_, T* i_, T* rm_, T* rv_,
           const T* x_, const T* w_, const T* b_, int64_t n_, int64_t c_, int64_t s_, double e_,
           bool train) {
          if (cnt != nullptr && train) {
            ++*cnt;
            if (cumul) mom = 1.0 / static_cast<double>(*cnt);  // PyTorch's momentum=None
          }
          f(y_, m_, i_, rm_, rv_, x_, w_, b_, n_, c_, s_, e_, mom, train);
        },
        of_dtype<T>(kernels().norm).batch_norm_forward, count, cumulative, momentum, py_, pm, pi,
        prm, prv, px, pw, pb, n, c, s, eps, training);
  });
  return py::make_tuple(y, mean, invstd);
}

py::tuple batch_norm_backward(py::handle dy_obj, py::handle x_obj, py::handle mean_obj,
                              py::handle invstd_obj, py::handle w_obj, bool training,
                              bool need_x, bool need_w, bool need_b, py::handle dx_out,
                              py::handle dw_out, py::handle db_out) {
  const char* op = "batch_norm_backward";
  const py::array dy_in = require_array(dy_obj, op, "dy");
  const DType dt = float_dtype(dy_in, op, "dy");
  const py::array x_in = require_array(x_obj, op, "x");
  require_dtype(x_in, dt, op, "x");
  require_same_shape(dy_in, x_in, op, "dy", "x");
  int64_t n, c, s;
  nc_s(x_in, n, c, s, op);
  const py::object mean = optional_vector(mean_obj, c, dt, op, "mean");
  const py::object invstd = optional_vector(invstd_obj, c, dt, op, "invstd");
  if (mean.is_none() || invstd.is_none()) throw py::value_error(std::string(op) + ": mean and invstd are required");
  const py::object w = optional_vector(w_obj, c, dt, op, "weight");
  const std::array<py::object, 3> grads = gradient_outputs(
      {{need_x, dx_out, shape_of(x_in)}, {need_w, dw_out, Shape{c}}, {need_b, db_out, Shape{c}}},
      dt, op, {{dy_in, "dy"}, {x_in, "x"}, {mean, "mean"}, {invstd, "invstd"}, {w, "weight"}});
  py::object dx = grads[0], dw = grads[1], db = grads[2];
  const py::array dy = contiguous(dy_in), x = contiguous(x_in);
  by_dtype(dt, [&](auto zero) {
    using T = decltype(zero);
    const NormFns<T>& fns = of_dtype<T>(kernels().norm);
    T *pdx = ptr_opt<T>(dx), *pdw = ptr_opt<T>(dw), *pdb = ptr_opt<T>(db);
    const T *pdy = cptr<T>(dy), *px = cptr<T>(x), *pm = cptr_opt<T>(mean), *pi = cptr_opt<T>(invstd);
    const T* pw = cptr_opt<T>(w);
    nogil(fns.batch_norm_backward, pdx, pdw, pdb, pdy, px, pm, pi, pw, n, c, s, training);
  });
  return py::make_tuple(dx, dw, db);
}

py::tuple layer_norm_forward(py::handle x_obj, py::handle w_obj, py::handle b_obj, double eps) {
  const char* op = "layer_norm_forward";
  const py::array x_in = require_array(x_obj, op, "x");
  const DType dt = float_dtype(x_in, op, "x");
  require_ndim(x_in, 2, op, "x");
  const int64_t m = x_in.shape(0), d = x_in.shape(1);
  const py::object w = optional_vector(w_obj, d, dt, op, "weight");
  const py::object b = optional_vector(b_obj, d, dt, op, "bias");
  if (!(eps >= 0.0)) throw py::value_error(std::string(op) + ": eps must be >= 0");
  if (d == 0) throw py::value_error(std::string(op) + ": rows must not be empty");
  py::array y = output(py::none(), shape_of(x_in), dt, op);
  py::array mean = output(py::none(), Shape{m}, dt, op);
  py::array rstd = output(py::none(), Shape{m}, dt, op);
  const py::array x = contiguous(x_in);
  by_dtype(dt, [&](auto zero) {
    using T = decltype(zero);
    const NormFns<T>& fns = of_dtype<T>(kernels().norm);
    T *py_ = ptr<T>(y), *pm = ptr<T>(mean), *pr = ptr<T>(rstd);
    const T *px = cptr<T>(x), *pw = cptr_opt<T>(w), *pb = cptr_opt<T>(b);
    nogil(fns.layer_norm_forward, py_, pm, pr, px, pw, pb, m, d, eps);
  });
  return py::make_tuple(y, mean, rstd);
}

py::tuple layer_norm_backward(py::handle dy_obj, py::handle x_obj, py::handle mean_obj,
                              py::handle rstd_obj, py::handle w_obj, bool need_x, bool need_w,
                              bool need_b, py::handle dx_out, py::handle dw_out,
                              py::handle db_out) {
  const char* op = "layer_norm_backward";
  const py::array dy_in = require_array(dy_obj, op, "dy");
  const DType dt = float_dtype(dy_in, op, "dy");
  const py::array x_in = require_array(x_obj, op, "x");
  require_dtype(x_in, dt, op, "x");
  require_ndim(x_in, 2, op, "x");
  require_same_shape(dy_in, x_in, op, "dy", "x");
  const int64_t m = x_in.shape(0), d = x_in.shape(1);
  const py::object mean = optional_vector(mean_obj, m, dt, op, "mean");
  const py::object rstd = optional_vector(rstd_obj, m, dt, op, "rstd");
  if (mean.is_none() || rstd.is_none()) throw py::value_error(std::string(op) + ": mean and rstd are required");
  const py::object w = optional_vector(w_obj, d, dt, op, "weight");
  const std::array<py::object, 3> grads = gradient_outputs(
      {{need_x, dx_out, shape_of(x_in)}, {need_w, dw_out, Shape{d}}, {need_b, db_out, Shape{d}}},
      dt, op, {{dy_in, "dy"}, {x_in, "x"}, {mean, "mean"}, {rstd, "rstd"}, {w, "weight"}});
  py::object dx = grads[0], dw = grads[1], db = grads[2];
  const py::array dy = contiguous(dy_in), x = contiguous(x_in);
  by_dtype(dt, [&](auto zero) {
    using T = decltype(zero);
    const NormFns<T>& fns = of_dtype<T>(kernels().norm);
    T *pdx = ptr_opt<T>(dx), *pdw = ptr_opt<T>(dw), *pdb = ptr_opt<T>(db);
    const T *pdy = cptr<T>(dy), *px = cptr<T>(x), *pm = cptr_opt<T>(mean), *pr = cptr_opt<T>(rstd);
    const T* pw = cptr_opt<T>(w);
    nogil(fns.layer_norm_backward, pdx, pdw, pdb, pdy, px, pm, pr, pw, m, d);
  });
  return py::make_tuple(dx, dw, db);
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def("batch_norm_forward", &batch_norm_forward, py::arg("x"), py::arg("weight") = py::none(),
        py::arg("bias") = py::none(), py::arg("running_mean") = py::none(),
        py::arg("running_var") = py::none(), py::kw_only(), py::arg("training") = true,
        py::arg("momentum") = 0.1, py::arg("eps") = 1e-5,
        py::arg("num_batches_tracked") = py::none(), py::arg("cumulative") = false,
        R"doc(Normalise x per channel (PyTorch's batch_norm; axis 1 is the channel axis).

In training, each channel is normalised with its batch mean and biased variance over the N * S
values (S = product of the spatial axes), and running_mean / running_var (if given) are updated
IN PLACE: new = (1 - momentum) * old + momentum * stat, with the unbiased variance. In eval mode
the running statistics normalise. y = (x - mean) / sqrt(var + eps) * weight + bias.

Args:
    x: (N, C) or (N, C, *spatial) float32/float64 array.
    weight, bias: optional (C,) arrays. running_mean, running_var: optional (C,) writeable,
        C-contiguous arrays of x's dtype (both or neither; required in eval mode).
    training: batch statistics (True, default) or running statistics.
    momentum: in [0, 1]. Default 0.1. eps: default 1e-5.
    num_batches_tracked: optional 0-d writeable int64 array, incremented in place by each
        training call (before the running statistics are updated).
    cumulative: with num_batches_tracked in training, use momentum = 1 / num_batches_tracked
        (the cumulative average of PyTorch's momentum=None) instead of `momentum`.

Returns:
    (y, mean, invstd): the output and the per-channel mean and 1 / sqrt(var + eps) used, which
    batch_norm_backward takes.

Raises:
    TypeError: non-array or wrong dtype. ValueError: wrong shapes, one value per channel in
    training (as PyTorch), eval without running statistics, momentum outside [0, 1].
)doc");
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("dy"), py::arg("x"),
        py::arg("mean"), py::arg("invstd"), py::arg("weight") = py::none(), py::kw_only(),
        py::arg("training") = true, py::arg("need_input_grad") = true,
        py::arg("need_weight_grad") = true, py::arg("need_bias_grad") = true,
        py::arg("dx_out") = py::none(), py::arg("dw_out") = py::none(),
        py::arg("db_out") = py::none(),
        R"doc(Compute the gradients of batch_norm_forward w.r.t. x, weight and bias.

Args:
    dy: gradient w.r.t. y (x's shape). x, weight, training: as given to the forward;
    mean, invstd: the forward's returned statistics.
    dx_out, dw_out, db_out: optional C-contiguous, writeable arrays of the gradients' shapes and
        dtype to write them into (overwritten); they must not overlap each other or the inputs.
        Default None (new arrays).

Returns:
    (dx, dweight, dbias), None where not asked for. In training dx includes the terms through the
    batch statistics; in eval mode dx = dy * weight * invstd.
)doc");
  m.def("layer_norm_forward", &layer_norm_forward, py::arg("x"), py::arg("weight") = py::none(),
        py::arg("bias") = py::none(), py::kw_only(), py::arg("eps") = 1e-5,
        R"doc(Normalise each row of a 2-D array (PyTorch's layer_norm over the last axis).

Args:
    x: (M, D) float32/float64 array (reshape to normalise over several trailing axes).
    weight, bias: optional (D,) arrays. eps: default 1e-5.

Returns:
    (y, mean, rstd): y = (x - mean) * rstd * weight + bias, with the per-row mean and
    1 / sqrt(biased variance + eps) for layer_norm_backward.
)doc");
  m.def("layer_norm_backward", &layer_norm_backward, py::arg("dy"), py::arg("x"),
        py::arg("mean"), py::arg("rstd"), py::arg("weight") = py::none(), py::kw_only(),
        py::arg("need_input_grad") = true, py::arg("need_weight_grad") = true,
        py::arg("need_bias_grad") = true,
        py::arg("dx_out") = py::none(), py::arg("dw_out") = py::none(),
        py::arg("db_out") = py::none(),
        R"doc(Compute the gradients of layer_norm_forward w.r.t. x, weight and bias.

Args:
    dy: gradient w.r.t. y (x's shape). x, weight: as given to the forward; mean, rstd: its
    returned statistics.
    dx_out, dw_out, db_out: optional C-contiguous, writeable arrays of the gradients' shapes and
        dtype to write them into (overwritten); they must not overlap each other or the inputs.
        Default None (new arrays).

Returns:
    (dx, dweight, dbias), None where not asked for; dweight and dbias are summed over rows in a
    fixed block order (bit-identical for any thread count).
)doc");
}

}  // namespace pydl::bind
