// Python bindings of the activation kernels (csrc/activations/activations.hpp).
//
// Element-wise functions accept any shape (0-d and empty included) and run over the flat
// C-contiguous buffer; softmax/log_softmax move `axis` to the end when it is not already there.
// Inputs of any strides are copied to C-contiguous memory; `out` is written in place and may be the
// input itself (in-place use); an `out` that only partly overlaps an input gets a private copy of
// that input first, so the result is always as if the input had been read before any write.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <sstream>
#include <string>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "common/dispatch.hpp"
#include "common/parallel.hpp"

namespace pydl::bind {
namespace {

// Element-wise calls with fewer elements stay on one thread: below this, handing a chunk to the
// pool costs about as much as computing it (see benches/bench_activations.py).
constexpr int64_t kGrain = 32768;

template <typename T>
const ActFns<T>& act_fns() {
  if constexpr (sizeof(T) == 4) {
    return kernels().act.f32;
  } else {
    return kernels().act.f64;
  }
}

// `a` as C-contiguous memory that `out` can be written over element by element: the very same
// buffer (in-place use) or one disjoint from it. A partly overlapping input is copied first.
py::array input_for(const py::array& a, const py::array& out) {
  py::array c = contiguous(a);
  if (c.data() != out.data() && overlaps(c, out))
    c = py::reinterpret_borrow<py::array>(c.attr("copy")());
  return c;
}

// negative_slope / alpha: the backward reads the branch off the sign of y, which only works when
// the negative branch maps x < 0 to y <= 0.
void require_nonneg_param(double v, const char* op, const char* name) {
  if (!(v >= 0.0 && std::isfinite(v))) {
    std::ostringstream os;
    os << op << ": " << name << " must be a finite number >= 0, got " << v
       << "; the backward is computed from the output y, and only a non-negative " << name
       << " keeps the sign of y equal to the sign of x";
    throw py::value_error(os.str());
  }
}

void require_same_dtype(const py::array& b, DType da, const char* op,
                        const char* name_a, const char* name_b) {
  DType db = float_dtype(b, op, name_b);
  if (db != da) {
    throw py::type_error(std::string(op) + ": " + name_a + " and " + name_b +
                         " must have the same dtype, got " + dtype_name(da) + " and " +
                         dtype_name(db) + "; pass both in one dtype");
  }
}

template <typename T>
void run_forward(Act act, double param, const py::array& x, py::array& y) {
  const ActFns<T>& f = act_fns<T>();
  const T* xp = cptr<T>(x);
  T* yp = ptr<T>(y);
  int64_t n = static_cast<int64_t>(x.size());
  T p = static_cast<T>(param);
  py::gil_scoped_release release;
  parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) { f.forward(act, p, xp + b, yp + b, e - b); });
}

template <typename T>
void run_backward(Act act, double param, const py::array& dy, const py::array& y, py::array& dx) {
  const ActFns<T>& f = act_fns<T>();
  const T* dyp = cptr<T>(dy);
  const T* yp = cptr<T>(y);
  T* dxp = ptr<T>(dx);
  int64_t n = static_cast<int64_t>(y.size());
  T p = static_cast<T>(param);
  py::gil_scoped_release release;
  parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) {
    f.backward(act, p, dyp + b, yp + b, dxp + b, e - b);
  });
}

template <typename T>
void run_erf(bool complement, const py::array& x, py::array& y) {
  const ActFns<T>& f = act_fns<T>();
  const T* xp = cptr<T>(x);
  T* yp = ptr<T>(y);
  int64_t n = static_cast<int64_t>(x.size());
  py::gil_scoped_release release;
  parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) { f.erf(complement, xp + b, yp + b, e - b); });
}

// x: any shape; returns act(x) with x's shape in `out` (or a new array).
py::array act_forward(const char* op, Act act, double param, py::handle x_obj,
                      py::handle out_obj) {
  py::array x = require_array(x_obj, op, "x");
  DType dt = float_dtype(x, op, "x");
  py::array out = output(out_obj, shape_of(x), dt, op);
  x = input_for(x, out);
  if (dt == DType::kF32) {
    run_forward<float>(act, param, x, out);
  } else {
    run_forward<double>(act, param, x, out);
  }
  return out;
}

// dy, y: the same shape; returns dy * act'(x) computed from y = act(x), or from x itself when
// act_backward_reads_input(act) (then the second argument is named x).
py::array act_backward(const char* op, Act act, double param, py::handle dy_obj, py::handle y_obj,
                       py::handle out_obj) {
  const char* y_name = act_backward_reads_input(act) ? "x" : "y";
  py::array dy = require_array(dy_obj, op, "dy");
  py::array y = require_array(y_obj, op, y_name);
  DType dt = float_dtype(dy, op, "dy");
  require_same_dtype(y, dt, op, "dy", y_name);
  require_same_shape(dy, y, op, "dy", y_name);
  py::array out = output(out_obj, shape_of(y), dt, op);
  dy = input_for(dy, out);
  y = input_for(y, out);
  if (dt == DType::kF32) {
    run_backward<float>(act, param, dy, y, out);
  } else {
    run_backward<double>(act, param, dy, y, out);
  }
  return out;
}

// approximate="none" | "tanh" as the activation it selects.
Act gelu_act(py::handle approximate, const char* op) {
  return require_choice(approximate, {"none", "tanh"}, op, "approximate") == 0 ? Act::kGelu
                                                                                : Act::kGeluTanh;
}

// The axis as a non-negative index, or ValueError (0-d arrays have no axis to reduce over).
int normalize_axis(const py::array& x, int64_t axis, const char* op) {
  int64_t nd = x.ndim();
  if (axis < -nd || axis >= nd) {
    throw py::value_error(std::string(op) + ": axis " + std::to_string(axis) +
                          " is out of bounds for x of shape " + shape_str(x) + " (ndim " +
                          std::to_string(nd) + ")");
  }
  return static_cast<int>(axis < 0 ? axis + nd : axis);
}

// A C-contiguous copy of `a` with axis `ax` moved to the end (rows of the reduction).
py::array moved_to_end(const py::array& a, int ax) {
  py::module_ np = py::module_::import("numpy");
  return py::reinterpret_borrow<py::array>(
      np.attr("ascontiguousarray")(np.attr("moveaxis")(a, ax, -1)));
}

// Runs a row kernel over `n` elements laid out as rows of `cols`, rows split across threads.
template <typename F>
void run_rows(int64_t n, int64_t cols, F&& row_kernel) {
  int64_t rows = n / cols;
  int64_t grain = kGrain / cols > 0 ? kGrain / cols : 1;
  py::gil_scoped_release release;
  parallel_chunks(rows, grain, row_kernel, /*align=*/1);
}

template <typename T>
void run_softmax(bool log_, const py::array& x, py::array& y, int64_t cols) {
  const ActFns<T>& f = act_fns<T>();
  const T* xp = cptr<T>(x);
  T* yp = ptr<T>(y);
  run_rows(static_cast<int64_t>(x.size()), cols, [&](int64_t b, int64_t e) {
    f.softmax_forward(log_, xp + b * cols, yp + b * cols, e - b, cols);
  });
}

template <typename T>
void run_softmax_backward(bool log_, const py::array& dy, const py::array& y, py::array& dx,
                          int64_t cols) {
  const ActFns<T>& f = act_fns<T>();
  const T* dyp = cptr<T>(dy);
  const T* yp = cptr<T>(y);
  T* dxp = ptr<T>(dx);
  run_rows(static_cast<int64_t>(y.size()), cols, [&](int64_t b, int64_t e) {
    f.softmax_backward(log_, dyp + b * cols, yp + b * cols, dxp + b * cols, e - b, cols);
  });
}

// Result buffer for a reduction over a non-last axis: `moved` itself when it is a private copy
// (the kernels run in place), else a new array of its shape.
py::array scratch_like(const py::array& moved, const py::array& orig) {
  if (moved.data() != orig.data()) return moved;
  return py::reinterpret_borrow<py::array>(py::module_::import("numpy").attr("empty_like")(moved));
}

py::array softmax_fwd(const char* op, bool log_, py::handle x_obj, int64_t axis,
                      py::handle out_obj) {
  py::array x = require_array(x_obj, op, "x");
  DType dt = float_dtype(x, op, "x");
  int ax = normalize_axis(x, axis, op);
  py::array out = output(out_obj, shape_of(x), dt, op);
  if (x.size() == 0) return out;
  int64_t cols = x.shape(ax);
  bool last = ax == x.ndim() - 1;
  py::array xin = last ? input_for(x, out) : moved_to_end(x, ax);
  py::array res = last ? out : scratch_like(xin, x);
  if (dt == DType::kF32) {
    run_softmax<float>(log_, xin, res, cols);
  } else {
    run_softmax<double>(log_, xin, res, cols);
  }
  if (!last) {
    py::module_ np = py::module_::import("numpy");
    np.attr("moveaxis")(out, ax, -1).attr("__setitem__")(py::ellipsis(), res);
  }
  return out;
}

py::array softmax_bwd(const char* op, bool log_, py::handle dy_obj, py::handle y_obj,
                      int64_t axis, py::handle out_obj) {
  py::array dy = require_array(dy_obj, op, "dy");
  py::array y = require_array(y_obj, op, "y");
  DType dt = float_dtype(dy, op, "dy");
  require_same_dtype(y, dt, op, "dy", "y");
  require_same_shape(dy, y, op, "dy", "y");
  int ax = normalize_axis(y, axis, op);
  py::array out = output(out_obj, shape_of(y), dt, op);
  if (y.size() == 0) return out;
  int64_t cols = y.shape(ax);
  bool last = ax == y.ndim() - 1;
  py::array dyin = last ? input_for(dy, out) : moved_to_end(dy, ax);
  py::array yin = last ? input_for(y, out) : moved_to_end(y, ax);
  py::array res = last ? out : scratch_like(dyin, dy);
  if (dt == DType::kF32) {
    run_softmax_backward<float>(log_, dyin, yin, res, cols);
  } else {
    run_softmax_backward<double>(log_, dyin, yin, res, cols);
  }
  if (!last) {
    py::module_ np = py::module_::import("numpy");
    np.attr("moveaxis")(out, ax, -1).attr("__setitem__")(py::ellipsis(), res);
  }
  return out;
}

}  // namespace

void bind_activations(py::module_& m) {
  using py::arg;
  const auto none = py::none();

  m.def(
      "relu",
      [](py::handle x, py::handle out) { return act_forward("relu", Act::kRelu, 0.0, x, out); },
      arg("x"), py::kw_only(), arg("out") = none,
      R"(Apply the rectified linear unit max(x, 0) element-wise.

Args:
    x: float32 or float64 array of any shape.
    out: Optional C-contiguous writeable array of x's shape and dtype to write into (may be x).
        Default None allocates a new array.

Returns:
    The result array (``out`` when given). NaN stays NaN.

Raises:
    TypeError: x is not a float32/float64 ndarray, or out has another dtype.
    ValueError: out has the wrong shape, is read-only or not C-contiguous.
)");
  m.def(
      "relu_backward",
      [](py::handle dy, py::handle y, py::handle out) {
        return act_backward("relu_backward", Act::kRelu, 0.0, dy, y, out);
      },
      arg("dy"), arg("y"), py::kw_only(), arg("out") = none,
      R"(Return the relu input gradient dy * (y > 0) from the forward output y.

The derivative at 0 is taken as 0 (relu'(0) = 0, as in PyTorch); NaN in dy or y gives NaN.

Args:
    dy: Gradient of the loss with respect to y; float32 or float64, any shape.
    y: The forward output relu(x); same shape and dtype as dy.
    out: Optional C-contiguous writeable array of that shape and dtype (may be dy or y).
        Default None allocates a new array.

Returns:
    dx, the gradient with respect to x (``out`` when given).

Raises:
    TypeError: dy or y is not a float32/float64 ndarray, or their dtypes differ.
    ValueError: dy and y differ in shape, or out is unusable.
)");
  m.def(
      "leaky_relu",
      [](py::handle x, double negative_slope, py::handle out) {
        require_nonneg_param(negative_slope, "leaky_relu", "negative_slope");
        return act_forward("leaky_relu", Act::kLeakyRelu, negative_slope, x, out);
      },
      arg("x"), arg("negative_slope") = 0.01, py::kw_only(), arg("out") = none,
      R"(Apply the leaky ReLU x if x > 0 else negative_slope * x element-wise.

Args:
    x: float32 or float64 array of any shape.
    negative_slope: Slope for x <= 0, finite and >= 0. Default 0.01.
    out: Optional C-contiguous writeable array of x's shape and dtype (may be x). Default None.

Returns:
    The result array (``out`` when given).

Raises:
    TypeError: x is not a float32/float64 ndarray, or out has another dtype.
    ValueError: negative_slope is negative, infinite or NaN (the backward is computed from the
        output, which needs a non-negative slope), or out is unusable.
)");
  m.def(
      "leaky_relu_backward",
      [](py::handle dy, py::handle y, double negative_slope, py::handle out) {
        require_nonneg_param(negative_slope, "leaky_relu_backward", "negative_slope");
        return act_backward("leaky_relu_backward", Act::kLeakyRelu, negative_slope, dy, y, out);
      },
      arg("dy"), arg("y"), arg("negative_slope") = 0.01, py::kw_only(), arg("out") = none,
      R"(Return the leaky ReLU input gradient dy * (1 if y > 0 else negative_slope) from y.

Args:
    dy: Gradient with respect to y; float32 or float64, any shape.
    y: The forward output; same shape and dtype as dy.
    negative_slope: The slope used in the forward, finite and >= 0. Default 0.01.
    out: Optional C-contiguous writeable array of that shape and dtype. Default None.

Returns:
    dx (``out`` when given).

Raises:
    TypeError: dy or y is not a float32/float64 ndarray, or their dtypes differ.
    ValueError: negative_slope < 0 or NaN, dy and y differ in shape, or out is unusable.
)");
  m.def(
      "elu",
      [](py::handle x, double alpha, py::handle out) {
        require_nonneg_param(alpha, "elu", "alpha");
        return act_forward("elu", Act::kElu, alpha, x, out);
      },
      arg("x"), arg("alpha") = 1.0, py::kw_only(), arg("out") = none,
      R"(Apply the ELU x if x > 0 else alpha * (exp(x) - 1) element-wise.

x = 0 takes the alpha branch (value 0, derivative alpha), as in PyTorch.

Args:
    x: float32 or float64 array of any shape.
    alpha: Scale of the negative branch, finite and >= 0. Default 1.0.
    out: Optional C-contiguous writeable array of x's shape and dtype (may be x). Default None.

Returns:
    The result array (``out`` when given).

Raises:
    TypeError: x is not a float32/float64 ndarray, or out has another dtype.
    ValueError: alpha is negative, infinite or NaN (the backward is computed from the output,
        which needs a non-negative alpha), or out is unusable.
)");
  m.def(
      "elu_backward",
      [](py::handle dy, py::handle y, double alpha, py::handle out) {
        require_nonneg_param(alpha, "elu_backward", "alpha");
        return act_backward("elu_backward", Act::kElu, alpha, dy, y, out);
      },
      arg("dy"), arg("y"), arg("alpha") = 1.0, py::kw_only(), arg("out") = none,
      R"(Return the ELU input gradient dy * (1 if y > 0 else y + alpha) from the output y.

Args:
    dy: Gradient with respect to y; float32 or float64, any shape.
    y: The forward output; same shape and dtype as dy.
    alpha: The alpha used in the forward, finite and >= 0. Default 1.0.
    out: Optional C-contiguous writeable array of that shape and dtype. Default None.

Returns:
    dx (``out`` when given).

Raises:
    TypeError: dy or y is not a float32/float64 ndarray, or their dtypes differ.
    ValueError: alpha < 0 or NaN, dy and y differ in shape, or out is unusable.
)");
  m.def(
      "sigmoid",
      [](py::handle x, py::handle out) {
        return act_forward("sigmoid", Act::kSigmoid, 0.0, x, out);
      },
      arg("x"), py::kw_only(), arg("out") = none,
      R"(Apply the logistic sigmoid 1 / (1 + exp(-x)) element-wise.

Accurate relative to the result for large negative x; sigmoid(+inf) = 1, sigmoid(-inf) = 0.

Args:
    x: float32 or float64 array of any shape.
    out: Optional C-contiguous writeable array of x's shape and dtype (may be x). Default None.

Returns:
    The result array (``out`` when given).

Raises:
    TypeError: x is not a float32/float64 ndarray, or out has another dtype.
    ValueError: out is unusable (wrong shape, read-only, not C-contiguous).
)");
  m.def(
      "sigmoid_backward",
      [](py::handle dy, py::handle y, py::handle out) {
        return act_backward("sigmoid_backward", Act::kSigmoid, 0.0, dy, y, out);
      },
      arg("dy"), arg("y"), py::kw_only(), arg("out") = none,
      R"(Return the sigmoid input gradient dy * y * (1 - y) from the output y.

Args:
    dy: Gradient with respect to y; float32 or float64, any shape.
    y: The forward output; same shape and dtype as dy.
    out: Optional C-contiguous writeable array of that shape and dtype. Default None.

Returns:
    dx (``out`` when given).

Raises:
    TypeError: dy or y is not a float32/float64 ndarray, or their dtypes differ.
    ValueError: dy and y differ in shape, or out is unusable.
)");
  m.def(
      "tanh",
      [](py::handle x, py::handle out) { return act_forward("tanh", Act::kTanh, 0.0, x, out); },
      arg("x"), py::kw_only(), arg("out") = none,
      R"(Apply the hyperbolic tangent element-wise.

Accurate relative to the result near 0; tanh(+-inf) = +-1.

Args:
    x: float32 or float64 array of any shape.
    out: Optional C-contiguous writeable array of x's shape and dtype (may be x). Default None.

Returns:
    The result array (``out`` when given).

Raises:
    TypeError: x is not a float32/float64 ndarray, or out has another dtype.
    ValueError: out is unusable (wrong shape, read-only, not C-contiguous).
)");
  m.def(
      "tanh_backward",
      [](py::handle dy, py::handle y, py::handle out) {
        return act_backward("tanh_backward", Act::kTanh, 0.0, dy, y, out);
      },
      arg("dy"), arg("y"), py::kw_only(), arg("out") = none,
      R"(Return the tanh input gradient dy * (1 - y * y) from the output y.

Args:
    dy: Gradient with respect to y; float32 or float64, any shape.
    y: The forward output; same shape and dtype as dy.
    out: Optional C-contiguous writeable array of that shape and dtype. Default None.

Returns:
    dx (``out`` when given).

Raises:
    TypeError: dy or y is not a float32/float64 ndarray, or their dtypes differ.
    ValueError: dy and y differ in shape, or out is unusable.
)");
  m.def(
      "gelu",
      [](py::handle x, py::handle approximate, py::handle out) {
        return act_forward("gelu", gelu_act(approximate, "gelu"), 0.0, x, out);
      },
      arg("x"), arg("approximate") = "none", py::kw_only(), arg("out") = none,
      R"(Apply the Gaussian error linear unit x * Phi(x) element-wise (Phi: standard normal CDF).

approximate="none" evaluates Phi through erfc in float64 (float32 results are rounded once), so
the result keeps its relative accuracy far into the negative tail; approximate="tanh" is
0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), computed as x * sigmoid(2 sqrt(2/pi) (...)).
Both match torch.nn.functional.gelu. gelu(-inf) = -0 (PyTorch gives NaN), gelu(+inf) = +inf.

Args:
    x: float32 or float64 array of any shape.
    approximate: "none" (exact) or "tanh". Default "none".
    out: Optional C-contiguous writeable array of x's shape and dtype (may be x). Default None.

Returns:
    The result array (``out`` when given). NaN stays NaN.

Raises:
    TypeError: x is not a float32/float64 ndarray, out has another dtype, or approximate is not
        a str.
    ValueError: approximate is not "none" or "tanh", or out is unusable.
)");
  m.def(
      "gelu_backward",
      [](py::handle dy, py::handle x, py::handle approximate, py::handle out) {
        return act_backward("gelu_backward", gelu_act(approximate, "gelu_backward"), 0.0, dy, x,
                            out);
      },
      arg("dy"), arg("x"), arg("approximate") = "none", py::kw_only(), arg("out") = none,
      R"(Return the GELU input gradient dy * gelu'(x) from the forward INPUT x.

Unlike relu/sigmoid/tanh, GELU cannot be inverted from its output, so the backward takes x (for a
fused ``linear(..., activation="gelu")``, the pre-activation it stores in ``preact``). The
derivative is Phi(x) + x phi(x) (exact) or the derivative of the tanh form; it is 0 at -inf and 1
at +inf (PyTorch gives NaN there).

Args:
    dy: Gradient with respect to y = gelu(x); float32 or float64, any shape.
    x: The forward input; same shape and dtype as dy.
    approximate: The approximate used in the forward, "none" or "tanh". Default "none".
    out: Optional C-contiguous writeable array of that shape and dtype (may be dy or x).
        Default None.

Returns:
    dx (``out`` when given).

Raises:
    TypeError: dy or x is not a float32/float64 ndarray, their dtypes differ, or approximate is
        not a str.
    ValueError: dy and x differ in shape, approximate is unknown, or out is unusable.
)");
  m.def(
      "silu",
      [](py::handle x, py::handle out) { return act_forward("silu", Act::kSilu, 0.0, x, out); },
      arg("x"), py::kw_only(), arg("out") = none,
      R"(Apply the sigmoid linear unit (swish) x * sigmoid(x) element-wise.

Matches torch.nn.functional.silu; silu(-inf) = -0 (PyTorch gives NaN), silu(+inf) = +inf.

Args:
    x: float32 or float64 array of any shape.
    out: Optional C-contiguous writeable array of x's shape and dtype (may be x). Default None.

Returns:
    The result array (``out`` when given). NaN stays NaN.

Raises:
    TypeError: x is not a float32/float64 ndarray, or out has another dtype.
    ValueError: out is unusable (wrong shape, read-only, not C-contiguous).
)");
  m.def(
      "silu_backward",
      [](py::handle dy, py::handle x, py::handle out) {
        return act_backward("silu_backward", Act::kSilu, 0.0, dy, x, out);
      },
      arg("dy"), arg("x"), py::kw_only(), arg("out") = none,
      R"(Return the SiLU input gradient dy * (s + x s (1 - s)), s = sigmoid(x), from the INPUT x.

SiLU cannot be inverted from its output, so the backward takes x (for a fused
``linear(..., activation="silu")``, the pre-activation it stores in ``preact``). The derivative is
0 at -inf and 1 at +inf (PyTorch gives NaN there).

Args:
    dy: Gradient with respect to y = silu(x); float32 or float64, any shape.
    x: The forward input; same shape and dtype as dy.
    out: Optional C-contiguous writeable array of that shape and dtype (may be dy or x).
        Default None.

Returns:
    dx (``out`` when given).

Raises:
    TypeError: dy or x is not a float32/float64 ndarray, or their dtypes differ.
    ValueError: dy and x differ in shape, or out is unusable.
)");

  m.def(
      "_erf",
      [](py::handle x_obj, bool complement) {
        py::array x = contiguous(require_array(x_obj, "_erf", "x"));
        DType dt = float_dtype(x, "_erf", "x");
        py::array y = output(py::none(), shape_of(x), dt, "_erf");
        if (dt == DType::kF32) {
          run_erf<float>(complement, x, y);
        } else {
          run_erf<double>(complement, x, y);
        }
        return y;
      },
      arg("x"), arg("complement") = false,
      "Test hook: erf(x), or erfc(x) with complement=True, by the kernels behind gelu.");

  for (bool log_ : {false, true}) {
    const char* fwd_name = log_ ? "log_softmax" : "softmax";
    const char* bwd_name = log_ ? "log_softmax_backward" : "softmax_backward";
    m.def(
        fwd_name,
        [log_, fwd_name](py::handle x, int64_t axis, py::handle out) {
          return softmax_fwd(fwd_name, log_, x, axis, out);
        },
        arg("x"), arg("axis") = -1, py::kw_only(), arg("out") = none,
        log_ ? R"(Return log(softmax(x)) along an axis, computed stably.

Computed as (x - max) - log(sum(exp(x - max))), finite for logits as large as +-1e20. A slice
containing +inf or NaN gives NaN throughout, as the textbook numpy expression would; -inf entries
give -inf when the slice has a finite entry.

Args:
    x: float32 or float64 array with at least one dimension.
    axis: The axis to normalise over. Default -1 (the last, the fastest case).
    out: Optional C-contiguous writeable array of x's shape and dtype (may be x). Default None.

Returns:
    The result array (``out`` when given).

Raises:
    TypeError: x is not a float32/float64 ndarray, or out has another dtype.
    ValueError: axis is out of range (also for 0-d x), or out is unusable.
)"
             : R"(Return the softmax exp(x) / sum(exp(x)) along an axis, computed stably.

The maximum is subtracted first, so logits as large as +-1e20 are fine and the result is
shift-invariant. A slice containing +inf or NaN gives NaN throughout, as the textbook numpy
expression would.

Args:
    x: float32 or float64 array with at least one dimension.
    axis: The axis to normalise over. Default -1 (the last, the fastest case).
    out: Optional C-contiguous writeable array of x's shape and dtype (may be x). Default None.

Returns:
    The result array (``out`` when given); each slice sums to 1.

Raises:
    TypeError: x is not a float32/float64 ndarray, or out has another dtype.
    ValueError: axis is out of range (also for 0-d x), or out is unusable.
)");
    m.def(
        bwd_name,
        [log_, bwd_name](py::handle dy, py::handle y, int64_t axis, py::handle out) {
          return softmax_bwd(bwd_name, log_, dy, y, axis, out);
        },
        arg("dy"), arg("y"), arg("axis") = -1, py::kw_only(), arg("out") = none,
        log_ ? R"(Return the log_softmax input gradient dy - exp(y) * sum(dy) from the output y.

Args:
    dy: Gradient with respect to y; float32 or float64, at least 1-D.
    y: The forward output log_softmax(x, axis); same shape and dtype as dy.
    axis: The axis used in the forward. Default -1.
    out: Optional C-contiguous writeable array of that shape and dtype. Default None.

Returns:
    dx (``out`` when given).

Raises:
    TypeError: dy or y is not a float32/float64 ndarray, or their dtypes differ.
    ValueError: dy and y differ in shape, axis is out of range, or out is unusable.
)"
             : R"(Return the softmax input gradient y * (dy - sum(dy * y)) from the output y.

Args:
    dy: Gradient with respect to y; float32 or float64, at least 1-D.
    y: The forward output softmax(x, axis); same shape and dtype as dy.
    axis: The axis used in the forward. Default -1.
    out: Optional C-contiguous writeable array of that shape and dtype. Default None.

Returns:
    dx (``out`` when given).

Raises:
    TypeError: dy or y is not a float32/float64 ndarray, or their dtypes differ.
    ValueError: dy and y differ in shape, axis is out of range, or out is unusable.
)");
  }
}

}  // namespace pydl::bind
