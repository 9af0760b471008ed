// Bindings for the convolution kernels (conv/conv.hpp): conv_forward, conv_backward.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "common/dispatch.hpp"

namespace pydl::bind {
namespace {

// The geometry of a call, validated: x (N, C_in, [H,] W), w (C_out, C_in / groups, [KH,] KW).
ConvShape conv_shape(const py::array& x, const py::array& w, py::handle stride,
                     py::handle padding, py::handle dilation, int64_t groups, const char* op) {
  const int nd = static_cast<int>(x.ndim()) - 2;
  if (nd != 1 && nd != 2) {
    throw py::value_error(std::string(op) + ": x must be (N, C, L) or (N, C, H, W), got shape " +
                          shape_str(x));
  }
  if (w.ndim() != x.ndim()) {
    throw py::value_error(std::string(op) + ": weight must have " + std::to_string(x.ndim()) +
                          " dimensions (C_out, C_in / groups, *kernel) for x of shape " +
                          shape_str(x) + ", got shape " + shape_str(w));
  }
  if (groups < 1) throw py::value_error(std::string(op) + ": groups must be >= 1");
  ConvShape s;
  s.n = x.shape(0);
  s.c_in = x.shape(1);
  s.h = nd == 2 ? x.shape(2) : 1;
  s.w = x.shape(x.ndim() - 1);
  s.c_out = w.shape(0);
  s.kh = nd == 2 ? w.shape(2) : 1;
  s.kw = w.shape(w.ndim() - 1);
  s.groups = groups;
  if (s.c_in % groups != 0 || s.c_out % groups != 0) {
    throw py::value_error(std::string(op) + ": groups = " + std::to_string(groups) +
                          " must divide both in_channels (" + std::to_string(s.c_in) +
                          ") and out_channels (" + std::to_string(s.c_out) + ")");
  }
  if (w.shape(1) * groups != s.c_in || s.kh < 1 || s.kw < 1 || s.c_out < 1) {
    throw py::value_error(std::string(op) + ": x of shape " + shape_str(x) + " has " +
                          std::to_string(s.c_in) + " channels, but weight of shape " +
                          shape_str(w) + " expects " + std::to_string(w.shape(1) * groups) +
                          " (weight.shape[1] * groups)");
  }
  const Shape st = int_tuple(stride, nd, 1, op, "stride");
  const Shape di = int_tuple(dilation, nd, 1, op, "dilation");
  Shape pad(nd, 0);
  bool same = false;
  if (py::isinstance<py::str>(padding)) {
    const std::string p = padding.cast<std::string>();
    if (p == "same") {
      same = true;
      for (int i = 0; i < nd; ++i) {
        if (st[i] != 1)
          throw py::value_error(std::string(op) + ": padding=\"same\" needs stride 1, got " +
                                std::string(py::str(stride)));
      }
    } else if (p != "valid") {
      throw py::value_error(std::string(op) + ": padding must be an int, a tuple, \"valid\" or "
                            "\"same\", got \"" + p + "\"");
    }
  } else {
    pad = int_tuple(padding, nd, 0, op, "padding");
  }
  const Shape k = nd == 2 ? Shape{s.kh, s.kw} : Shape{s.kw};
  const Shape in = nd == 2 ? Shape{s.h, s.w} : Shape{s.w};
  // PyTorch's "same": total padding di * (k - 1), the odd one extra at the end.
  if (same) {
    for (int i = 0; i < nd; ++i) pad[i] = di[i] * (k[i] - 1) / 2;
  }
  const Window win = window_geometry(in, k, st, pad, di, same, op);
  set_window(s, win);
  s.dh = win.dh;
  s.dw = win.dw;
  return s;
}

Shape out_shape(const ConvShape& s, bool two_d) {
  return two_d ? Shape{s.n, s.c_out, s.oh, s.ow} : Shape{s.n, s.c_out, s.ow};
}

py::array conv_forward(py::handle x_obj, py::handle w_obj, py::handle b_obj, py::handle stride,
                       py::handle padding, py::handle dilation, int64_t groups) {
  const char* op = "conv_forward";
  const py::array x_in = require_array(x_obj, op, "x");
  const DType dt = float_dtype(x_in, op, "x");
  const py::array w_in = require_array(w_obj, op, "weight");
  require_dtype(w_in, dt, op, "weight");
  const ConvShape s = conv_shape(x_in, w_in, stride, padding, dilation, groups, op);
  const py::object b = optional_vector(b_obj, s.c_out, dt, op, "bias");
  const Shape os = out_shape(s, x_in.ndim() == 4);
  py::array y = output(py::none(), os, dt, op);
  const py::array x = contiguous(x_in), w = contiguous(w_in);
  by_dtype(dt, [&](auto zero) {
    using T = decltype(zero);
    const ConvFns<T>& fns = of_dtype<T>(kernels().conv);
    T* py_ = ptr<T>(y);
    const T* px = cptr<T>(x);
    const T* pw = cptr<T>(w);
    const T* pb = cptr_opt<T>(b);
    nogil(fns.forward, py_, px, pw, pb, s);
  });
  return y;
}

py::tuple conv_backward(py::handle dy_obj, py::handle x_obj, py::handle w_obj, py::handle stride,
                        py::handle padding, py::handle dilation, int64_t groups, bool need_x,
                        bool need_w, bool need_b, py::handle dx_out, py::handle dw_out,
                        py::handle db_out) {
  const char* op = "conv_backward";
  const py::array dy_in = require_array(dy_obj, op, "dy");
  const DType dt = float_dtype(dy_in, op, "dy");
  const py::array x_in = require_array(x_obj, op, "x");
  require_dtype(x_in, dt, op, "x");
  const py::array w_in = require_array(w_obj, op, "weight");
  require_dtype(w_in, dt, op, "weight");
  const ConvShape s = conv_shape(x_in, w_in, stride, padding, dilation, groups, op);
  const Shape os = out_shape(s, x_in.ndim() == 4);
  if (shape_of(dy_in) != os) {
    throw py::value_error(std::string(op) + ": dy must have the output's shape " + shape_str(os) +
                          ", got " + shape_str(dy_in));
  }
  const std::array<py::object, 3> grads = gradient_outputs(
      {{need_x, dx_out, shape_of(x_in)}, {need_w, dw_out, shape_of(w_in)},
       {need_b, db_out, Shape{s.c_out}}},
      dt, op, {{dy_in, "dy"}, {x_in, "x"}, {w_in, "weight"}});
  py::object dx = grads[0], dw = grads[1], db = grads[2];
  const py::array dyc = contiguous(dy_in), x = contiguous(x_in), w = contiguous(w_in);
  by_dtype(dt, [&](auto zero) {
    using T = decltype(zero);
    const ConvFns<T>& fns = of_dtype<T>(kernels().conv);
    T* pdx = ptr_opt<T>(dx);
    T* pdw = ptr_opt<T>(dw);
    T* pdb = ptr_opt<T>(db);
    const T* pdy = cptr<T>(dyc);
    const T* px = cptr<T>(x);
    const T* pw = cptr<T>(w);
    if (pdx) nogil(fns.backward_data, pdx, pdy, pw, s);
    if (pdw || pdb) nogil(fns.backward_weight, pdw, pdb, pdy, px, s);
  });
  return py::make_tuple(dx, dw, db);
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv_forward", &conv_forward, py::arg("x"), py::arg("weight"),
        py::arg("bias") = py::none(), py::kw_only(), py::arg("stride") = 1,
        py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1,
        R"doc(Compute a 1-d or 2-d convolution (PyTorch's Conv1d / Conv2d forward).

y[n, co] = bias[co] + sum over the input channels of co's group and the kernel window of
weight[co, ci, ...] * x[n, ci, ...], with zero padding, stride and dilation. Bit-identical for any
thread count.

Args:
    x: (N, C_in, L) or (N, C_in, H, W) float32/float64 array, any strides.
    weight: (C_out, C_in / groups, K) or (C_out, C_in / groups, KH, KW), same dtype.
    bias: optional (C_out,) array, same dtype. Default None.
    stride, dilation: int or one int per spatial axis, >= 1. Default 1.
    padding: int or one int per spatial axis (>= 0), "valid" (= 0) or "same" (output size = input
        size, stride 1 only; an odd total padding puts the extra zero at the end, as PyTorch).
        Default 0.
    groups: >= 1, dividing C_in and C_out. Default 1.

Returns:
    y: (N, C_out, L_out) or (N, C_out, H_out, W_out), L_out = (L + 2p - d(K - 1) - 1) // s + 1.

Raises:
    TypeError: a non-array, a dtype other than float32/float64, mixed dtypes, non-int geometry.
    ValueError: wrong ranks, channel counts that do not match weight.shape[1] * groups, groups not
        dividing the channels, a window larger than the padded input, a bad padding string.
)doc");
  m.def("conv_backward", &conv_backward, py::arg("dy"), py::arg("x"), py::arg("weight"),
        py::kw_only(), py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1,
        py::arg("groups") = 1, py::arg("need_input_grad") = true,
        py::arg("need_weight_grad") = true, py::arg("need_bias_grad") = true,
        py::arg("dx_out") = py::none(), py::arg("dw_out") = py::none(),
        py::arg("db_out") = py::none(),
        R"doc(Compute the gradients of conv_forward w.r.t. x, weight and bias.

Args:
    dy: gradient w.r.t. the output, shaped like conv_forward's result.
    x, weight, stride, padding, dilation, groups: as given to conv_forward.
    need_input_grad, need_weight_grad, need_bias_grad: which gradients to compute. Default True.
    dx_out, dw_out, db_out: optional C-contiguous, writeable arrays of the gradients' shapes and
        dtype to write them into (overwritten, not accumulated); they must not overlap each other
        or the inputs. Default None (new arrays).

Returns:
    (dx, dweight, dbias): arrays shaped like x, weight and (C_out,) (the out arrays where given),
    or None where not asked for.
    Bit-identical for any thread count (the sum over samples runs in fixed blocks).

Raises:
    TypeError, ValueError: as conv_forward; ValueError if dy does not have the output's shape.
)doc");
}

}  // namespace pydl::bind
