// Bindings for the pooling kernels (pool/pool.hpp): max_pool_*, avg_pool_*, adaptive_avg_pool_*.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <tuple>
#include <utility>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "common/dispatch.hpp"

namespace pydl::bind {
namespace {

// Number of spatial axes (1 or 2) of an (N, C, L) or (N, C, H, W) shape; ValueError otherwise.
int spatial_dims(const Shape& shape, const char* op, const char* arg) {
  if (shape.size() != 3 && shape.size() != 4) {
    throw py::value_error(std::string(op) + ": " + arg +
                          " must be (N, C, L) or (N, C, H, W), got shape " + shape_str(shape));
  }
  for (int64_t v : shape) {
    if (v < 0) throw py::value_error(std::string(op) + ": negative size in " + shape_str(shape));
  }
  return static_cast<int>(shape.size()) - 2;
}

PoolShape planes_of(const Shape& in) {
  PoolShape s;
  s.planes = in[0] * in[1];
  s.h = in.size() == 4 ? in[2] : 1;
  s.w = in.back();
  return s;
}

Shape pooled_shape(const Shape& in, const PoolShape& s) {
  return in.size() == 4 ? Shape{in[0], in[1], s.oh, s.ow} : Shape{in[0], in[1], s.ow};
}

// Window geometry of max/avg pooling; stride None = kernel_size (PyTorch's default).
PoolShape window_shape(const Shape& in, py::handle kernel, py::handle stride, py::handle padding,
                       const char* op) {
  const int nd = spatial_dims(in, op, "x");
  PoolShape s = planes_of(in);
  const Shape k = int_tuple(kernel, nd, 1, op, "kernel_size");
  const Shape st = stride.is_none() ? k : int_tuple(stride, nd, 1, op, "stride");
  const Shape p = int_tuple(padding, nd, 0, op, "padding");
  for (int i = 0; i < nd; ++i) {
    if (2 * p[i] > k[i]) {
      throw py::value_error(std::string(op) + ": padding " + std::to_string(p[i]) +
                            " must be at most half the kernel size " + std::to_string(k[i]));
    }
  }
  const Shape sz = nd == 2 ? Shape{s.h, s.w} : Shape{s.w};
  set_window(s, window_geometry(sz, k, st, p, Shape(nd, 1), false, op));
  return s;
}

PoolShape adaptive_shape(const Shape& in, py::handle output_size, const char* op) {
  const int nd = spatial_dims(in, op, "x");
  PoolShape s = planes_of(in);
  const Shape o = int_tuple(output_size, nd, 1, op, "output_size");
  s.oh = nd == 2 ? o[0] : 1;
  s.ow = o[nd - 1];
  if (s.h == 0 || s.w == 0) {
    throw py::value_error(std::string(op) + ": x must have non-empty spatial axes, got shape " +
                          shape_str(in));
  }
  return s;
}

// Runs f(fns, T{}) with the pool functions of x's dtype; f calls the kernel through nogil (which
// takes its arguments by value, so the call can be captured by the engine).
template <typename F>
void run(DType dt, F f) {
  by_dtype(dt, [&](auto zero) { f(of_dtype<decltype(zero)>(kernels().pool), zero); });
}

// Checks dy against the pooled shape of input_shape and returns (dy contiguous, new dx).
std::pair<py::array, py::array> backward_arrays(py::handle dy_obj, const Shape& in,
                                                const PoolShape& s, const char* op, DType* dt,
                                                py::handle out = py::none()) {
  const py::array dy_in = require_array(dy_obj, op, "dy");
  *dt = float_dtype(dy_in, op, "dy");
  const Shape os = pooled_shape(in, s);
  if (shape_of(dy_in) != os) {
    throw py::value_error(std::string(op) + ": dy must have shape " + shape_str(os) +
                          " for input_shape " + shape_str(in) + ", got " + shape_str(dy_in));
  }
  py::array dx = output(out, in, *dt, op);
  require_no_overlap(dx, dy_in, op, "out", "dy");
  return {contiguous(dy_in), dx};
}

py::tuple max_pool_forward(py::handle x_obj, py::handle kernel, py::handle stride,
                           py::handle padding) {
  const char* op = "max_pool_forward";
  const py::array x_in = require_array(x_obj, op, "x");
  const DType dt = float_dtype(x_in, op, "x");
  const Shape in = shape_of(x_in);
  const PoolShape s = window_shape(in, kernel, stride, padding, op);
  const Shape os = pooled_shape(in, s);
  py::array y = output(py::none(), os, dt, op);
  py::array_t<int64_t> idx(std::vector<py::ssize_t>(os.begin(), os.end()));
  const py::array x = contiguous(x_in);
  int64_t* pi = idx.mutable_data();
  if (Capture* c = active_capture()) c->keep.push_back(idx);  // captured kernels write into it
  run(dt, [&](const auto& fns, auto zero) {
    using T = decltype(zero);
    nogil(fns.max_forward, ptr<T>(y), pi, cptr<T>(x), s);
  });
  return py::make_tuple(y, idx);
}

// The pooled geometry implied by dy's shape (adaptive and max backward need no window).
PoolShape from_dy(const py::array& dy, const Shape& in, const char* op) {
  const int nd = spatial_dims(in, op, "input_shape");
  const Shape ds = shape_of(dy);
  if (ds.size() != in.size() || ds[0] != in[0] || ds[1] != in[1]) {
    throw py::value_error(std::string(op) + ": dy of shape " + shape_str(ds) +
                          " does not match input_shape " + shape_str(in) +
                          " (same rank, batch and channels expected)");
  }
  PoolShape s = planes_of(in);
  s.oh = nd == 2 ? ds[2] : 1;
  s.ow = ds.back();
  return s;
}

py::array max_pool_backward(py::handle dy_obj, py::handle idx_obj, py::handle in_obj,
                            py::handle out) {
  const Shape in = shape_arg(in_obj, "max_pool_backward");
  const char* op = "max_pool_backward";
  const PoolShape s = from_dy(require_array(dy_obj, op, "dy"), in, op);
  DType dt;
  py::array dy = no_array(), dx = no_array();
  std::tie(dy, dx) = backward_arrays(dy_obj, in, s, op, &dt, out);
  const py::array idx_in = require_array(idx_obj, op, "indices");
  if (shape_of(idx_in) != shape_of(dy)) {
    throw py::value_error(std::string(op) + ": indices must have dy's shape " + shape_str(dy) +
                          ", got " + shape_str(idx_in));
  }
  // Indices are positions inside one plane of the input.
  // int64 C-contiguous indices (max_pool_forward's) are checked and read in place; a captured
  // call reads them again on every replay (max_pool_forward's captured kernel rewrites them).
  const int64_t* pidx = int64_indices(idx_in, s.h * s.w, op, "indices");
  std::vector<int64_t> copy;
  if (pidx != nullptr) {
    require_no_overlap(dx, idx_in, op, "out", "indices");
    if (Capture* c = active_capture()) c->keep.push_back(idx_in);
  } else {
    copy = checked_indices(idx_in, s.h * s.w, op, "indices");
    capture_fail();  // the kernel reads this checked copy of the indices
    pidx = copy.data();
  }
  run(dt, [&](const auto& fns, auto zero) {
    using T = decltype(zero);
    nogil(fns.max_backward, ptr<T>(dx), cptr<T>(dy), pidx, s);
  });
  return dx;
}

py::array avg_pool_forward(py::handle x_obj, py::handle kernel, py::handle stride,
                           py::handle padding) {
  const char* op = "avg_pool_forward";
  const py::array x_in = require_array(x_obj, op, "x");
  const DType dt = float_dtype(x_in, op, "x");
  const Shape in = shape_of(x_in);
  const PoolShape s = window_shape(in, kernel, stride, padding, op);
  py::array y = output(py::none(), pooled_shape(in, s), dt, op);
  const py::array x = contiguous(x_in);
  run(dt, [&](const auto& fns, auto zero) {
    using T = decltype(zero);
    nogil(fns.avg_forward, ptr<T>(y), cptr<T>(x), s);
  });
  return y;
}

py::array avg_pool_backward(py::handle dy_obj, py::handle in_obj, py::handle kernel,
                            py::handle stride, py::handle padding, py::handle out) {
  const Shape in = shape_arg(in_obj, "avg_pool_backward");
  const char* op = "avg_pool_backward";
  const PoolShape s = window_shape(in, kernel, stride, padding, op);
  DType dt;
  py::array dy = no_array(), dx = no_array();
  std::tie(dy, dx) = backward_arrays(dy_obj, in, s, op, &dt, out);
  run(dt, [&](const auto& fns, auto zero) {
    using T = decltype(zero);
    nogil(fns.avg_backward, ptr<T>(dx), cptr<T>(dy), s);
  });
  return dx;
}

py::array adaptive_avg_pool_forward(py::handle x_obj, py::handle output_size) {
  const char* op = "adaptive_avg_pool_forward";
  const py::array x_in = require_array(x_obj, op, "x");
  const DType dt = float_dtype(x_in, op, "x");
  const Shape in = shape_of(x_in);
  const PoolShape s = adaptive_shape(in, output_size, op);
  py::array y = output(py::none(), pooled_shape(in, s), dt, op);
  const py::array x = contiguous(x_in);
  run(dt, [&](const auto& fns, auto zero) {
    using T = decltype(zero);
    nogil(fns.adaptive_avg_forward, ptr<T>(y), cptr<T>(x), s);
  });
  return y;
}

py::array adaptive_avg_pool_backward(py::handle dy_obj, py::handle in_obj, py::handle out) {
  const Shape in = shape_arg(in_obj, "adaptive_avg_pool_backward");
  const char* op = "adaptive_avg_pool_backward";
  const PoolShape s = from_dy(require_array(dy_obj, op, "dy"), in, op);
  if (s.h == 0 || s.w == 0 || s.oh < 1 || s.ow < 1) {
    throw py::value_error(std::string(op) + ": input_shape " + shape_str(in) +
                          " and dy must have non-empty spatial axes");
  }
  DType dt;
  py::array dy = no_array(), dx = no_array();
  std::tie(dy, dx) = backward_arrays(dy_obj, in, s, op, &dt, out);
  run(dt, [&](const auto& fns, auto zero) {
    using T = decltype(zero);
    nogil(fns.adaptive_avg_backward, ptr<T>(dx), cptr<T>(dy), s);
  });
  return dx;
}

}  // namespace

void bind_pool(py::module_& m) {
  m.def("max_pool_forward", &max_pool_forward, py::arg("x"), py::arg("kernel_size"),
        py::arg("stride") = py::none(), py::arg("padding") = 0,
        R"doc(Compute 1-d or 2-d max pooling (PyTorch's MaxPool1d / MaxPool2d forward).

Args:
    x: (N, C, L) or (N, C, H, W) float32/float64 array.
    kernel_size: int or one int per spatial axis.
    stride: int, tuple or None (= kernel_size, the default).
    padding: implicit -inf padding per side, at most kernel_size / 2. Default 0.

Returns:
    (y, indices): the maxima and, as int64, the position h * W + w of each maximum inside its
    plane (the first one on ties; NaN wins), for max_pool_backward.

Raises:
    TypeError: non-array, non-float dtype, non-int geometry.
    ValueError: wrong rank, padding above half the kernel, a window larger than the padded input.
)doc");
  m.def("max_pool_backward", &max_pool_backward, py::arg("dy"), py::arg("indices"),
        py::arg("input_shape"), py::kw_only(), py::arg("out") = py::none(),
        R"doc(Route dy back to the maxima found by max_pool_forward.

Args:
    dy: gradient w.r.t. the pooled output. indices: max_pool_forward's indices.
    input_shape: the shape of the pooled x.

Returns:
    dx of shape input_shape (zero except at the maxima; a position that was the maximum of several
    windows gets their sum).

Raises:
    TypeError, ValueError: bad dtypes, shapes that do not agree, indices outside a plane.
)doc");
  m.def("avg_pool_forward", &avg_pool_forward, py::arg("x"), py::arg("kernel_size"),
        py::arg("stride") = py::none(), py::arg("padding") = 0,
        R"doc(Compute 1-d or 2-d average pooling (PyTorch's AvgPool1d / AvgPool2d forward).

Each window's sum is divided by the full kernel area: zero padding counts (PyTorch's default
count_include_pad=True). Arguments and errors as max_pool_forward.

Returns:
    y: (N, C, L_out) or (N, C, H_out, W_out).
)doc");
  m.def("avg_pool_backward", &avg_pool_backward, py::arg("dy"), py::arg("input_shape"),
        py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0,
        py::kw_only(), py::arg("out") = py::none(),
        R"doc(Compute the gradient of avg_pool_forward w.r.t. x (shape input_shape).

Args:
    dy: gradient w.r.t. the pooled output; the other arguments as given to avg_pool_forward.

Returns:
    dx of shape input_shape.
)doc");
  m.def("adaptive_avg_pool_forward", &adaptive_avg_pool_forward, py::arg("x"),
        py::arg("output_size"),
        R"doc(Compute adaptive average pooling (PyTorch's AdaptiveAvgPool1d / 2d forward).

Output cell i averages inputs [floor(i * L / O), ceil((i + 1) * L / O)) along each axis.

Args:
    x: (N, C, L) or (N, C, H, W) float32/float64 array with non-empty spatial axes.
    output_size: int or one int per spatial axis, >= 1.

Returns:
    y: (N, C, *output_size).
)doc");
  m.def("adaptive_avg_pool_backward", &adaptive_avg_pool_backward, py::arg("dy"),
        py::arg("input_shape"), py::kw_only(), py::arg("out") = py::none(),
        R"doc(Compute the gradient of adaptive_avg_pool_forward w.r.t. x (shape input_shape).
)doc");
}

}  // namespace pydl::bind
