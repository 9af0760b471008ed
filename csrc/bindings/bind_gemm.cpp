// Python bindings of the GEMM family: matmul and the fused linear layer.
#include <limits>
#include <string>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "common/cpu_caches.hpp"
#include "common/dispatch.hpp"
#include "gemm/gemm_blocking.hpp"

namespace pydl::bind {
namespace {

namespace py = pybind11;

const char* bool_str(bool v) { return v ? "True" : "False"; }

// Element strides of a 2-D input, read in place. The rare views whose elements are not aligned
// (byte offsets or strides that are not whole elements) are copied to aligned contiguous memory.
py::array strided_input(const py::array& a, int64_t& s0, int64_t& s1) {
  py::array r = a;
  if (!(a.flags() & kAligned) || a.strides(0) % a.itemsize() != 0 ||
      a.strides(1) % a.itemsize() != 0) {
    r = aligned_contiguous_copy(a);
  }
  s0 = r.strides(0) / r.itemsize();
  s1 = r.strides(1) / r.itemsize();
  return r;
}

// The GEMM of the active table for T, its epilogue using the same table's activations.
template <typename T>
void run_gemm(const KernelTable& kt, GemmArgs<T>& g) {
  g.act_fns = &fns_of<T>(kt.act);
  if constexpr (sizeof(T) == 4) {
    nogil(kt.gemm.sgemm, g);
  } else {
    nogil(kt.gemm.dgemm, g);
  }
}

// op(a) @ op(b) into a checked C-contiguous output.
template <typename T>
void matmul_typed(const py::array& a, bool trans_a, const py::array& b, bool trans_b,
                  py::array& c, int64_t m, int64_t n, int64_t k, bool accumulate) {
  GemmArgs<T> g;
  g.m = m;
  g.n = n;
  g.k = k;
  int64_t a0, a1, b0, b1;
  py::array av = strided_input(a, a0, a1), bv = strided_input(b, b0, b1);
  g.a = cptr<T>(av);
  g.rs_a = trans_a ? a1 : a0;
  g.cs_a = trans_a ? a0 : a1;
  g.b = cptr<T>(bv);
  g.rs_b = trans_b ? b1 : b0;
  g.cs_b = trans_b ? b0 : b1;
  g.c = ptr<T>(c);
  g.ldc = n;
  g.accumulate = accumulate;
  run_gemm<T>(kernels(), g);
}

py::object matmul(py::handle a_obj, py::handle b_obj, bool trans_a, bool trans_b,
                  py::handle out_obj, bool accumulate) {
  const char* op = "matmul";
  py::array a = require_array(a_obj, op, "a");
  py::array b = require_array(b_obj, op, "b");
  DType dt = float_dtype(a, op, "a");
  require_dtype(b, dt, op, "b");
  require_ndim(a, 2, op, "a");
  require_ndim(b, 2, op, "b");
  const int64_t m = trans_a ? a.shape(1) : a.shape(0), k = trans_a ? a.shape(0) : a.shape(1);
  const int64_t kb = trans_b ? b.shape(1) : b.shape(0), n = trans_b ? b.shape(0) : b.shape(1);
  if (k != kb) {
    throw py::value_error(std::string(op) + ": inner dimensions differ: op(a) is (" +
                          std::to_string(m) + ", " + std::to_string(k) + ") from a of shape " +
                          shape_str(a) + " with trans_a=" + bool_str(trans_a) + ", op(b) is (" +
                          std::to_string(kb) + ", " + std::to_string(n) + ") from b of shape " +
                          shape_str(b) + " with trans_b=" + bool_str(trans_b) +
                          "; op(a).shape[1] must equal op(b).shape[0]");
  }
  if (accumulate && out_obj.is_none()) {
    throw py::value_error(std::string(op) +
                          ": accumulate=True adds into `out`, so `out` must be given");
  }
  const Shape shape{m, n};
  checked_numel(shape, dt == DType::kF32 ? 4 : 8, op);
  py::array c = output(out_obj, shape, dt, op);
  if (!out_obj.is_none()) {
    require_no_overlap(c, a, op, "out", "a");
    require_no_overlap(c, b, op, "out", "b");
  }
  by_dtype(dt, [&](auto t) {
    matmul_typed<decltype(t)>(a, trans_a, b, trans_b, c, m, n, k, accumulate);
  });
  return std::move(c);
}

template <typename T>
void linear_typed(const KernelTable& kt, const py::array& x, const py::array& w,
                  const py::array* bias, py::array& y, py::array* pre, Act act,
                  double param) {
  GemmArgs<T> g;
  g.m = x.shape(0);
  g.n = w.shape(0);
  g.k = x.shape(1);
  int64_t x0, x1, w0, w1;
  py::array xv = strided_input(x, x0, x1), wv = strided_input(w, w0, w1);
  g.a = cptr<T>(xv);
  g.rs_a = x0;
  g.cs_a = x1;
  // op(B) = w.T: element (p, j) is w[j, p].
  g.b = cptr<T>(wv);
  g.rs_b = w1;
  g.cs_b = w0;
  g.c = ptr<T>(y);
  g.ldc = g.n;
  py::array bv = no_array();
  if (bias) {
    bv = aligned_contiguous_copy(*bias);
    g.bias = cptr<T>(bv);
  }
  if (pre) g.pre = ptr<T>(*pre);
  g.act = act;
  g.act_param = static_cast<T>(param);
  run_gemm<T>(kt, g);
}

py::object linear(py::handle x_obj, py::handle w_obj, py::handle b_obj, py::handle act_obj,
                  RealArg slope_obj, RealArg alpha_obj, py::handle out_obj,
                  py::handle preact_obj) {
  const char* op = "linear";
  py::array x = require_array(x_obj, op, "x");
  py::array w = require_array(w_obj, op, "w");
  DType dt = float_dtype(x, op, "x");
  require_dtype(w, dt, op, "w");
  require_ndim(x, 2, op, "x");
  require_ndim(w, 2, op, "w");
  if (x.shape(1) != w.shape(1)) {
    throw py::value_error(std::string(op) + ": x of shape " + shape_str(x) +
                          " has " + std::to_string(x.shape(1)) + " features but w of shape " +
                          shape_str(w) + " expects " + std::to_string(w.shape(1)) +
                          " (w is (out_features, in_features))");
  }
  py::array b = no_array();
  if (!b_obj.is_none()) {
    b = require_array(b_obj, op, "b");
    require_dtype(b, dt, op, "b");
    if (b.ndim() != 1 || b.shape(0) != w.shape(0)) {
      throw py::value_error(std::string(op) + ": b must have shape (" +
                            std::to_string(w.shape(0)) + ",) to match w of shape " +
                            shape_str(w) + ", got " + shape_str(b));
    }
  }
  const Act act = parse_linear_activation(act_obj);
  const double inf = std::numeric_limits<double>::infinity();
  const double negative_slope = real_in(slope_obj, 0.0, inf, op, "negative_slope");
  const double alpha = real_in(alpha_obj, 0.0, inf, op, "alpha");
  const double param = act == Act::kLeakyRelu ? negative_slope : act == Act::kElu ? alpha : 0.0;
  const KernelTable& kt = kernels();
  const bool have_act = dt == DType::kF32 ? kt.act.f32.forward != nullptr
                                           : kt.act.f64.forward != nullptr;
  if (act != Act::kNone && !have_act) {
    throw py::value_error(std::string(op) + ": activation '" +
                          act_obj.cast<std::string>() + "' is not available in this build");
  }
  const Shape shape{x.shape(0), w.shape(0)};
  checked_numel(shape, dt == DType::kF32 ? 4 : 8, op);
  py::array y = output(out_obj, shape, dt, op);
  if (!out_obj.is_none()) {
    require_no_overlap(y, x, op, "out", "x");
    require_no_overlap(y, w, op, "out", "w");
    if (!b_obj.is_none()) require_no_overlap(y, b, op, "out", "b");
  }
  py::array pre = no_array();
  if (!preact_obj.is_none()) {
    pre = output(preact_obj, shape, dt, op, "preact");
    require_no_overlap(pre, x, op, "preact", "x");
    require_no_overlap(pre, w, op, "preact", "w");
    require_no_overlap(pre, y, op, "preact", "out");
    if (!b_obj.is_none()) require_no_overlap(pre, b, op, "preact", "b");
  }
  const py::array* bp = b_obj.is_none() ? nullptr : &b;
  py::array* pp = preact_obj.is_none() ? nullptr : &pre;
  by_dtype(dt, [&](auto t) { linear_typed<decltype(t)>(kt, x, w, bp, y, pp, act, param); });
  return std::move(y);
}

py::dict blocking_dict(const GemmBlocking& b) {
  py::dict d;
  d["mr"] = b.mr;
  d["nr"] = b.nr;
  d["kc"] = b.kc;
  d["mc"] = b.mc;
  d["nc"] = b.nc;
  return d;
}

py::dict cache_dict(const CacheLevel& c) {
  py::dict d;
  d["size"] = c.size;
  d["ways"] = c.ways;
  d["line"] = c.line;
  d["sharing"] = c.sharing;
  return d;
}

// The blocking of the active kernel table and the caches it was derived from (pydl.cpu_info).
py::dict gemm_info() {
  const KernelTable& kt = kernels();
  py::dict out;
  py::dict caches;
  const CpuCaches& cc = cpu_caches();
  caches["l1d"] = cache_dict(cc.l1d);
  caches["l2"] = cache_dict(cc.l2);
  caches["l3"] = cache_dict(cc.l3);
  caches["source"] = cc.source;
  out["caches"] = caches;
  if (kt.gemm.sblocking == nullptr) {
    out["source"] = "reference";  // the generic kernel does not block
    out["float32"] = py::none();
    out["float64"] = py::none();
    return out;
  }
  const GemmBlocking s = kt.gemm.sblocking(), d = kt.gemm.dblocking();
  out["source"] = s.from_env ? "PYDL_GEMM_BLOCKING" : "cache model";
  out["float32"] = blocking_dict(s);
  out["float64"] = blocking_dict(d);
  return out;
}

}  // namespace

void bind_gemm(py::module_& m) {
  // A malformed PYDL_GEMM_BLOCKING fails `import pydl` (ValueError naming the variable).
  {
    int64_t kc, mc, nc;
    try {
      gemm_blocking_env(kc, mc, nc);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
  }
  m.def("_gemm_info", &gemm_info,
        "Return the GEMM cache blocking in use and the detected caches (for pydl.cpu_info).");
  m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::kw_only(), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("out") = py::none(), py::arg("accumulate") = false,
        R"doc(Multiply two matrices: op(a) @ op(b), where op(x) is x.T when its trans_ flag is set.

The backward products of a linear layer y = x @ w.T are matmuls with transpose flags, with no
transposed copy: dx = matmul(dy, w) and dw = matmul(dy, x, trans_a=True).

Args:
    a: 2-D float32 or float64 array; any strides (views, .T, negative steps) are read directly.
    b: 2-D array of the same dtype.
    trans_a: Use a.T instead of a. Default False.
    trans_b: Use b.T instead of b. Default False.
    out: Optional C-contiguous, writeable array of the result's shape and dtype to write into;
        must not overlap a or b. Default None (a new array).
    accumulate: Add the product into `out` (which must be given) instead of overwriting it.
        Default False.

Returns:
    The (m, n) product (`out` itself when given).

Raises:
    TypeError: a or b is not a numpy array, not float32/float64, or their dtypes differ.
    ValueError: a or b is not 2-D; the inner dimensions of op(a) and op(b) differ; `out` has the
        wrong shape, is read-only, not C-contiguous or overlaps an input; accumulate without out.

Example:
    >>> import numpy as np
    >>> from pydl.kernels import matmul
    >>> x, w = np.ones((4, 3), np.float32), np.ones((2, 3), np.float32)
    >>> dy = np.ones((4, 2), np.float32)
    >>> matmul(dy, w).shape, matmul(dy, x, trans_a=True).shape  # dx, dw
    ((4, 3), (2, 3))
)doc");
  m.def("linear", &linear, py::arg("x"), py::arg("w"), py::arg("b") = py::none(),
        py::arg("activation") = py::none(), py::kw_only(), py::arg("negative_slope") = 0.01,
        py::arg("alpha") = 1.0, py::arg("out") = py::none(), py::arg("preact") = py::none(),
        R"doc(Apply a dense layer: activation(x @ w.T + b), in one fused pass.

The bias and activation are applied to each block of the product while it is still in cache,
and w is read transposed through its strides (no copy).

Args:
    x: (batch, in_features) float32 or float64 array.
    w: (out_features, in_features) array of the same dtype (PyTorch's Linear.weight layout).
    b: Optional (out_features,) bias of the same dtype. Default None.
    activation: None, "relu", "leaky_relu", "elu", "sigmoid", "tanh", "gelu" (exact),
        "gelu_tanh" (GELU's tanh form) or "silu". Default None.
    negative_slope: Slope of leaky_relu for x < 0; must be >= 0. Default 0.01.
    alpha: Scale of elu for x < 0; must be >= 0. Default 1.0.
    out: Optional C-contiguous, writeable (batch, out_features) array to write into; must not
        overlap x, w or b. Default None (a new array).
    preact: Optional C-contiguous, writeable (batch, out_features) array that receives
        x @ w.T + b before the activation, written in the same fused pass. gelu_backward and
        silu_backward take it (those activations cannot be inverted from their output); must not
        overlap x, w, b or out. Default None.

Returns:
    The (batch, out_features) activations (`out` itself when given).

Raises:
    TypeError: an array argument is not a numpy array or not float32/float64, the dtypes differ,
        or activation is not None or a str.
    ValueError: wrong ndim; in_features of x and w differ; b has the wrong shape; an unknown
        activation; negative or NaN negative_slope/alpha; an unusable `out` or `preact`.
)doc");
}

}  // namespace pydl::bind
