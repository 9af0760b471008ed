// Python bindings of the activation kernels (csrc/activations/activations.hpp).
//
// Element-wise functions accept any shape (0-d and empty included) and run over the flat
// C-contiguous buffer; softmax/log_softmax move `axis` to the end when it is not already there.
// Inputs of any strides are copied to C-contiguous memory; `out` is written in place and may be the
// input itself (in-place use); an `out` that only partly overlaps an input gets a private copy of
// that input first, so the result is always as if the input had been read before any write.
// The element-wise entries are registered from one table (kActs) with docstrings composed from
// their specific lines and the sections they share.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <list>
#include <string>

#include "bindings/bindings.hpp"
#include "activations/activations.hpp"
#include "bindings/checks.hpp"
#include "dropout/dropout.hpp"

namespace pydl::bind {
namespace {

// `a` as C-contiguous memory that `out` can be written over element by element: the very same
// buffer (in-place use) or one disjoint from it. A partly overlapping input is copied first.
py::array input_for(const py::array& a, const py::array& out) {
  py::array c = contiguous(a);
  if (c.data() != out.data() && overlaps(c, out)) {
    capture_fail();  // a private copy: a capture would freeze its contents
    c = py::reinterpret_borrow<py::array>(c.attr("copy")());
  }
  return c;
}

// x: any shape; returns act(x) with x's shape in `out` (or a new array).
py::array act_forward(const char* op, Act act, double param, py::handle x_obj,
                      py::handle out_obj) {
  py::array x = require_array(x_obj, op, "x");
  DType dt = float_dtype(x, op, "x");
  py::array out = output(out_obj, shape_of(x), dt, op);
  x = input_for(x, out);
  by_dtype(dt, [&](auto t) {
    using T = decltype(t);
    nogil(activations::forward<T>, act, T(param), cptr<T>(x), ptr<T>(out), x.size());
  });
  return out;
}

// dy, s: the same shape; returns dy * act'(x) computed from s = y = act(x), or from s = x when
// act_backward_reads_input(act) (then the second argument is named x). With a dropout mask (not
// None) the gradient comes through dropout(act(x)): dy is first masked and scaled as dropout's
// backward does, in the same kernel pass.
py::array act_backward(const char* op, Act act, double param, py::handle dy_obj, py::handle s_obj,
                       py::handle out_obj, py::handle mask_obj = py::none(), double p = 0.0) {
  const char* s_name = act_backward_reads_input(act) ? "x" : "y";
  py::array dy = require_array(dy_obj, op, "dy");
  py::array s = require_array(s_obj, op, s_name);
  DType dt = float_dtype(dy, op, "dy");
  require_same_dtype(s, dt, op, "dy", s_name);
  require_same_shape(dy, s, op, "dy", s_name);
  const bool masked = !mask_obj.is_none();
  py::array mask = masked ? mask_input(mask_obj, shape_of(dy), op) : no_array();
  py::array out = output(out_obj, shape_of(s), dt, op);
  dy = input_for(dy, out);
  s = input_for(s, out);
  if (masked) require_no_overlap(out, mask, op, "out", "mask");
  by_dtype(dt, [&](auto t) {
    using T = decltype(t);
    if (masked) {
      nogil(dropout::backward_through_activation<T>, ptr<T>(out), cptr<T>(dy),
            cptr<uint8_t>(mask), p, act, T(param), cptr<T>(s), s.size());
    } else {
      nogil(activations::backward<T>, act, T(param), cptr<T>(dy), cptr<T>(s), ptr<T>(out),
            s.size());
    }
  });
  return out;
}

// negative_slope / alpha: the backward reads the branch off the sign of y, which only works when
// the negative branch maps x < 0 to y <= 0.
double nonneg_param(RealArg v, const char* op, const char* name) {
  double d = real_arg(v, op, name);
  require_nonneg_finite(d, op, name,
                        std::string("; the backward is computed from the output y, and only a "
                                    "non-negative ") +
                            name + " keeps the sign of y equal to the sign of x");
  return d;
}

// approximate="none" | "tanh" as the activation it selects.
Act gelu_act(py::handle approximate, const char* op) {
  return require_choice(approximate, {"none", "tanh"}, op, "approximate") == 0 ? Act::kGelu
                                                                                : Act::kGeluTanh;
}

// A C-contiguous copy of `a` with axis `ax` moved to the end (rows of the reduction).
py::array moved_to_end(const py::array& a, int ax) {
  py::module_ np = py::module_::import("numpy");
  return py::reinterpret_borrow<py::array>(
      np.attr("ascontiguousarray")(np.attr("moveaxis")(a, ax, -1)));
}

// Result buffer for a reduction over a non-last axis: `moved` itself when it is a private copy
// (the kernels run in place), else a new array of its shape.
py::array scratch_like(const py::array& moved, const py::array& orig) {
  if (moved.data() != orig.data()) return moved;
  return py::reinterpret_borrow<py::array>(py::module_::import("numpy").attr("empty_like")(moved));
}

// softmax (dy_obj None) or its backward along `axis`, as (log_)softmax[_backward](...).
py::array softmax_entry(const char* op, bool log_, py::handle dy_obj, py::handle x_obj,
                        int64_t axis, py::handle out_obj) {
  const bool bwd = !dy_obj.is_none();
  py::array x = require_array(x_obj, op, bwd ? "y" : "x");
  py::array dy = no_array();
  DType dt;
  if (bwd) {
    dy = require_array(dy_obj, op, "dy");
    dt = float_dtype(dy, op, "dy");
    require_same_dtype(x, dt, op, "dy", "y");
    require_same_shape(dy, x, op, "dy", "y");
  } else {
    dt = float_dtype(x, op, "x");
  }
  const int ax = normalize_axis(x, axis, op);
  py::array out = output(out_obj, shape_of(x), dt, op);
  if (x.size() == 0) return out;
  const int64_t cols = x.shape(ax), rows = x.size() / cols;
  const bool last = ax == x.ndim() - 1;
  if (!last) capture_fail();  // numpy moves the axis around the kernel: not capturable
  py::array xin = last ? input_for(x, out) : moved_to_end(x, ax);
  py::array dyin = !bwd ? no_array() : last ? input_for(dy, out) : moved_to_end(dy, ax);
  py::array res = last ? out : scratch_like(bwd ? dyin : xin, bwd ? dy : x);
  by_dtype(dt, [&](auto t) {
    using T = decltype(t);
    if (bwd) {
      nogil(activations::softmax_backward<T>, log_, cptr<T>(dyin), cptr<T>(xin), ptr<T>(res),
            rows, cols);
    } else {
      nogil(activations::softmax_forward<T>, log_, cptr<T>(xin), ptr<T>(res), rows, cols);
    }
  });
  if (!last) {
    py::module_ np = py::module_::import("numpy");
    np.attr("moveaxis")(out, ax, -1).attr("__setitem__")(py::ellipsis(), res);
  }
  return out;
}

// The element-wise activations. `param` selects the signature: none, a real hyper-parameter
// (default `pdefault`, validated by nonneg_param) or GELU's approximate="none" | "tanh".
enum class Param { kNone, kReal, kApproximate };

struct ActEntry {
  const char* name;
  Act act;
  Param param;
  const char* pname;  // the hyper-parameter's name
  double pdefault;
  const char* fwd_summary;  // first docstring line of the forward, then extra paragraphs
  const char* fwd_notes;
  const char* bwd_summary;
  const char* bwd_notes;
  const char* param_doc;  // its Args line(s), indented by 4
  const char* param_raise;  // ValueError clause for it (ends with a comma)
};

const ActEntry kActs[] = {
    {"relu", Act::kRelu, Param::kNone, "", 0.0,
     "Apply the rectified linear unit max(x, 0) element-wise.", "",
     "Return the relu input gradient dy * (y > 0) from the forward output y.",
     "The derivative at 0 is taken as 0 (relu'(0) = 0, as in PyTorch); NaN in dy or y gives NaN.",
     "", ""},
    {"leaky_relu", Act::kLeakyRelu, Param::kReal, "negative_slope", 0.01,
     "Apply the leaky ReLU x if x > 0 else negative_slope * x element-wise.", "",
     "Return the leaky ReLU input gradient dy * (1 if y > 0 else negative_slope) from y.", "",
     "    negative_slope: Slope for x <= 0, finite and >= 0. Default 0.01.\n",
     "negative_slope is negative, infinite or NaN (the backward is\n        computed from the "
     "output, which needs a non-negative slope),"},
    {"elu", Act::kElu, Param::kReal, "alpha", 1.0,
     "Apply the ELU x if x > 0 else alpha * (exp(x) - 1) element-wise.",
     "x = 0 takes the alpha branch (value 0, derivative alpha), as in PyTorch.",
     "Return the ELU input gradient dy * (1 if y > 0 else y + alpha) from the output y.", "",
     "    alpha: Scale of the negative branch, finite and >= 0. Default 1.0.\n",
     "alpha is negative, infinite or NaN (the backward is computed\n        from the output, "
     "which needs a non-negative alpha),"},
    {"sigmoid", Act::kSigmoid, Param::kNone, "", 0.0,
     "Apply the logistic sigmoid 1 / (1 + exp(-x)) element-wise.",
     "Accurate relative to the result for large negative x; sigmoid(+inf) = 1, sigmoid(-inf) = 0.",
     "Return the sigmoid input gradient dy * y * (1 - y) from the output y.", "", "", ""},
    {"tanh", Act::kTanh, Param::kNone, "", 0.0, "Apply the hyperbolic tangent element-wise.",
     "Accurate relative to the result near 0; tanh(+-inf) = +-1.",
     "Return the tanh input gradient dy * (1 - y * y) from the output y.", "", "", ""},
    {"gelu", Act::kGelu, Param::kApproximate, "approximate", 0.0,
     "Apply the Gaussian error linear unit x * Phi(x) element-wise (Phi: standard normal CDF).",
     "approximate=\"none\" evaluates Phi through erfc in float64 (float32 results are rounded "
     "once), so\nthe result keeps its relative accuracy far into the negative tail; "
     "approximate=\"tanh\" is\n0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), computed as x * "
     "sigmoid(2 sqrt(2/pi) (...)).\nBoth match torch.nn.functional.gelu. gelu(-inf) = -0 "
     "(PyTorch gives NaN), gelu(+inf) = +inf.",
     "Return the GELU input gradient dy * gelu'(x) from the forward INPUT x.",
     "Unlike relu/sigmoid/tanh, GELU cannot be inverted from its output, so the backward takes x "
     "(for a\nfused ``linear(..., activation=\"gelu\")``, the pre-activation it stores in "
     "``preact``). The\nderivative is Phi(x) + x phi(x) (exact) or the derivative of the tanh "
     "form; it is 0 at -inf and 1\nat +inf (PyTorch gives NaN there).",
     "    approximate: \"none\" (exact) or \"tanh\", as in the forward. Default \"none\".\n",
     "approximate is not \"none\" or \"tanh\","},
    {"silu", Act::kSilu, Param::kNone, "", 0.0,
     "Apply the sigmoid linear unit (swish) x * sigmoid(x) element-wise.",
     "Matches torch.nn.functional.silu; silu(-inf) = -0 (PyTorch gives NaN), silu(+inf) = +inf.",
     "Return the SiLU input gradient dy * (s + x s (1 - s)), s = sigmoid(x), from the INPUT x.",
     "SiLU cannot be inverted from its output, so the backward takes x (for a fused\n"
     "``linear(..., activation=\"silu\")``, the pre-activation it stores in ``preact``). The "
     "derivative is\n0 at -inf and 1 at +inf (PyTorch gives NaN there).",
     "", ""},
};

// Docstrings live as long as the module (pybind11 keeps the pointer).
const char* keep(std::string s) {
  static std::list<std::string> store;
  store.push_back(std::move(s));
  return store.back().c_str();
}

std::string paragraph(const char* text) {
  return *text ? std::string(text) + "\n\n" : std::string();
}

// ", or <param> is not ..." for the TypeError line (on a line of its own).
std::string param_type_clause(const ActEntry& e) {
  if (e.param == Param::kNone) return "";
  if (e.param == Param::kApproximate) return ",\n        or approximate is not a str";
  return std::string(",\n        or ") + e.pname + " is not a real number";
}

const char* forward_doc(const ActEntry& e) {
  return keep(std::string(e.fwd_summary) + "\n\n" + paragraph(e.fwd_notes) +
              "Args:\n    x: float32 or float64 array of any shape.\n" + e.param_doc +
              "    out: Optional C-contiguous writeable array of x's shape and dtype (may be x). "
              "Default None.\n\nReturns:\n    The result array (``out`` when given). NaN stays "
              "NaN.\n\nRaises:\n    TypeError: x is not a float32/float64 ndarray, out has another "
              "dtype" + param_type_clause(e) + ".\n    ValueError: " + e.param_raise +
              (*e.param_raise ? "\n        or " : "") +
              "out is unusable (wrong shape, read-only, not C-contiguous).\n");
}

const char* backward_doc(const ActEntry& e) {
  const bool input = act_backward_reads_input(e.act);
  const std::string s = input ? "x" : "y";
  return keep(std::string(e.bwd_summary) + "\n\n" + paragraph(e.bwd_notes) +
              "Args:\n    dy: Gradient with respect to y; float32 or float64, any shape.\n    " + s +
              (input ? ": The forward input" : ": The forward output") +
              "; same shape and dtype as dy.\n" + e.param_doc +
              "    out: Optional C-contiguous writeable array of that shape and dtype (may be dy or " +
              s + ").\n        Default None.\n\nReturns:\n    dx, the gradient with respect to x "
              "(``out`` when given).\n\nRaises:\n    TypeError: dy or " + s +
              " is not a float32/float64 ndarray, or their dtypes differ" + param_type_clause(e) +
              ".\n    ValueError: " + e.param_raise + (*e.param_raise ? " " : "") + "dy and " + s +
              " differ in shape, or out is unusable.\n");
}

void def_activation(py::module_& m, const ActEntry& e) {
  using py::arg;
  const std::string bname = std::string(e.name) + "_backward";
  const char* fop = e.name;
  const char* bop = keep(bname);
  const char* s = act_backward_reads_input(e.act) ? "x" : "y";
  const auto none = py::none();
  const Act act = e.act;
  switch (e.param) {
    case Param::kNone:
      m.def(fop, [=](py::handle x, py::handle out) { return act_forward(fop, act, 0.0, x, out); },
            arg("x"), py::kw_only(), arg("out") = none, forward_doc(e));
      m.def(
          bop,
          [=](py::handle dy, py::handle y, py::handle out) {
            return act_backward(bop, act, 0.0, dy, y, out);
          },
          arg("dy"), arg(s), py::kw_only(), arg("out") = none, backward_doc(e));
      break;
    case Param::kReal: {
      const char* pn = e.pname;
      m.def(
          fop,
          [=](py::handle x, RealArg p, py::handle out) {
            return act_forward(fop, act, nonneg_param(p, fop, pn), x, out);
          },
          arg("x"), arg(pn) = e.pdefault, py::kw_only(), arg("out") = none, forward_doc(e));
      m.def(
          bop,
          [=](py::handle dy, py::handle y, RealArg p, py::handle out) {
            return act_backward(bop, act, nonneg_param(p, bop, pn), dy, y, out);
          },
          arg("dy"), arg(s), arg(pn) = e.pdefault, py::kw_only(), arg("out") = none,
          backward_doc(e));
      break;
    }
    case Param::kApproximate:
      m.def(
          fop,
          [=](py::handle x, py::handle approximate, py::handle out) {
            return act_forward(fop, gelu_act(approximate, fop), 0.0, x, out);
          },
          arg("x"), arg("approximate") = "none", py::kw_only(), arg("out") = none,
          forward_doc(e));
      m.def(
          bop,
          [=](py::handle dy, py::handle x, py::handle approximate, py::handle out) {
            return act_backward(bop, gelu_act(approximate, bop), 0.0, dy, x, out);
          },
          arg("dy"), arg("x"), arg("approximate") = "none", py::kw_only(), arg("out") = none,
          backward_doc(e));
      break;
  }
}

const char* const kSoftmaxDocs[4] = {
    R"(Return the softmax exp(x) / sum(exp(x)) along an axis, computed stably.

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
)",
    R"(Return log(softmax(x)) along an axis, computed stably.

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
)",
    R"(Return the softmax input gradient y * (dy - sum(dy * y)) from the output y.

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
)",
    R"(Return the log_softmax input gradient dy - exp(y) * sum(dy) from the output y.

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
)"};

}  // namespace

void bind_activations(py::module_& m) {
  using py::arg;
  const auto none = py::none();
  for (const ActEntry& e : kActs) def_activation(m, e);

  for (bool log_ : {false, true}) {
    const char* fname = log_ ? "log_softmax" : "softmax";
    const char* bname = log_ ? "log_softmax_backward" : "softmax_backward";
    m.def(
        fname,
        [=](py::handle x, int64_t axis, py::handle out) {
          return softmax_entry(fname, log_, py::none(), x, axis, out);
        },
        arg("x"), arg("axis") = -1, py::kw_only(), arg("out") = none, kSoftmaxDocs[log_]);
    m.def(
        bname,
        [=](py::handle dy, py::handle y, int64_t axis, py::handle out) {
          // dy is never None here: softmax_entry reads a None dy as "forward".
          return softmax_entry(bname, log_, require_array(dy, bname, "dy"), y, axis, out);
        },
        arg("dy"), arg("y"), arg("axis") = -1, py::kw_only(), arg("out") = none,
        kSoftmaxDocs[2 + log_]);
  }

  m.def(
      "_dropout_act_backward",
      [](py::handle dy, py::handle mask, RealArg p_obj, py::handle s, py::handle act_obj,
         RealArg slope_obj, RealArg alpha_obj, py::handle out) {
        const char* op = "_dropout_act_backward";
        const double p = drop_probability(p_obj, op);
        const Act act = parse_linear_activation(act_obj, op);
        if (mask.is_none())
          throw py::type_error(std::string(op) + ": mask must be a uint8 numpy.ndarray, got None");
        if (act == Act::kNone)
          throw py::value_error(std::string(op) + ": activation must name an activation, got None");
        const double param = act == Act::kLeakyRelu ? nonneg_param(slope_obj, op, "negative_slope")
                             : act == Act::kElu     ? nonneg_param(alpha_obj, op, "alpha")
                                                    : 0.0;
        return act_backward(op, act, param, dy, s, out, mask, p);
      },
      arg("dy"), arg("mask"), arg("p"), arg("s"), arg("activation"), py::kw_only(),
      arg("negative_slope") = 0.01, arg("alpha") = 1.0, arg("out") = none,
      "The gradient through activation(x) then dropout (private: the engine's fused backward of "
      "a Linear + activation + Dropout): (dy * mask / (1 - p)) * activation'(.) from s (the "
      "activation's output, or its input for gelu/gelu_tanh/silu), in one pass, the same bits as "
      "dropout_backward followed by <activation>_backward. activation and negative_slope/alpha "
      "as for linear.");

  m.def(
      "_erf",
      [](py::handle x_obj, bool complement) {
        py::array x = contiguous(require_array(x_obj, "_erf", "x"));
        DType dt = float_dtype(x, "_erf", "x");
        py::array y = output(py::none(), shape_of(x), dt, "_erf");
        by_dtype(dt, [&](auto t) {
          using T = decltype(t);
          nogil(activations::erf<T>, complement, cptr<T>(x), ptr<T>(y), x.size());
        });
        return y;
      },
      arg("x"), arg("complement") = false,
      "Test hook: erf(x), or erfc(x) with complement=True, by the kernels behind gelu.");
}

}  // namespace pydl::bind
