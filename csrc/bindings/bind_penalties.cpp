// Python bindings of the weight penalties: L1, L2 and elastic net are one value kernel and one
// gradient kernel (penalties/penalties.hpp) at l1_ratio 1, 0 and free, registered from one table.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <limits>
#include <string>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "penalties/penalties.hpp"

namespace pydl::bind {
namespace {

// wd >= 0 and (when free) l1_ratio in [0, 1], else ValueError / TypeError naming them.
double checked_wd(RealArg wd, const char* op) {
  return real_in(wd, 0.0, std::numeric_limits<double>::infinity(), op, "wd");
}
double checked_ratio(RealArg l1_ratio, const char* op) {
  return real_in(l1_ratio, 0.0, 1.0, op, "l1_ratio");
}

// wd * (l1_ratio * sum|w| + (1 - l1_ratio) * sum w^2).
double penalty_value(py::handle w_obj, RealArg wd_obj, RealArg* ratio_obj, double l1_ratio,
                     const char* op) {
  py::array w = require_array(w_obj, op, "w");
  const DType dt = float_dtype(w, op, "w");
  const double wd = checked_wd(wd_obj, op);
  if (ratio_obj) l1_ratio = checked_ratio(*ratio_obj, op);
  w = contiguous(w);
  return by_dtype(dt, [&](auto t) {
    using T = decltype(t);
    return nogil(penalties::value<T>, cptr<T>(w), w.size(), wd, l1_ratio);
  });
}

// grad += d/dw of penalty_value(w, wd, l1_ratio).
void penalty_backward(py::handle grad_obj, py::handle w_obj, RealArg wd_obj, RealArg* ratio_obj,
                      double l1_ratio, const char* op) {
  py::array w = require_array(w_obj, op, "w");
  const DType dt = float_dtype(w, op, "w");
  py::array grad = inout(grad_obj, shape_of(w), dt, op, "grad");
  require_no_overlap(grad, w, op, "grad", "w");
  const double wd = checked_wd(wd_obj, op);
  if (ratio_obj) l1_ratio = checked_ratio(*ratio_obj, op);
  w = contiguous(w);
  by_dtype(dt, [&](auto t) {
    using T = decltype(t);
    nogil(penalties::backward<T>, ptr<T>(grad), cptr<T>(w), w.size(), wd, l1_ratio);
  });
}

// One penalty: its name, the fixed l1_ratio (< 0: a free l1_ratio argument, default 0.5) and
// the specific docstring lines of the value and gradient entries.
struct PenaltyEntry {
  const char* name;
  double l1_ratio;
  const char* value_doc;
  const char* grad_doc;
};

const PenaltyEntry kPenalties[] = {
    {"l1_penalty", 1.0, "Return the L1 penalty wd * sum(|w|).\n\n",
     "Add the L1 penalty gradient wd * sign(w) into grad in place.\n\nsign(0) = 0, so weights "
     "that are exactly 0 get no gradient.\n\n"},
    {"l2_penalty", 0.0,
     "Return the L2 penalty wd * sum(w**2).\n\nSGD's weight_decay=lam corresponds to wd = lam / "
     "2.\n\n",
     "Add the L2 penalty gradient 2 * wd * w into grad in place.\n\n"},
    {"elastic_net_penalty", -1.0,
     "Return the elastic-net penalty of w.\n\nThe penalty is wd * (l1_ratio * sum(|w|) + (1 - "
     "l1_ratio) * sum(w**2)); l1_ratio = 1 gives\nexactly l1_penalty and l1_ratio = 0 exactly "
     "l2_penalty.\n\n",
     "Add the elastic-net penalty gradient into grad in place.\n\nThe gradient is wd * (l1_ratio "
     "* sign(w) + 2 * (1 - l1_ratio) * w), with sign(0) = 0.\nl1_ratio = 1 / 0 give exactly the "
     "l1 / l2 gradients.\n\n"},
};

std::string args_doc(bool grad, bool free_ratio) {
  return std::string("Args:\n") +
         (grad ? "    grad: Writeable C-contiguous array of w's shape and dtype; updated in place "
                 "(grad += ...).\n"
               : "") +
         "    w: float32 or float64 array of any shape (strided views are fine).\n"
         "    wd: Penalty weight, >= 0.\n" +
         (free_ratio ? "    l1_ratio: Share of the L1 term, in [0, 1]. Default 0.5.\n" : "") +
         (grad ? "\nReturns:\n    None.\n"
               : "\nReturns:\n    The penalty as a Python float (0.0 for an empty w).\n");
}

std::string raises_doc(bool grad) {
  return grad ? "\nRaises:\n    TypeError: w is not a float32/float64 ndarray, grad is not an "
                "ndarray of w's dtype, or wd or\n        l1_ratio is not a real number.\n    "
                "ValueError: grad's shape differs from w's, grad is read-only, not C-contiguous or "
                "overlaps\n        w, wd is negative or NaN, or l1_ratio is outside [0, 1] or "
                "NaN.\n"
              : "\nRaises:\n    TypeError: w is not a float32/float64 ndarray, or wd or l1_ratio "
                "is not a real number.\n    ValueError: wd is negative or NaN, or l1_ratio is "
                "outside [0, 1] or NaN.\n";
}

const char* const kSumNote =
    "The sums are accumulated in float64 in fixed-size blocks combined in order, so the value "
    "is\nbit-identical for any thread count.\n\n";

}  // namespace

void bind_penalties(py::module_& m) {
  using py::arg;
  static std::string docs[2 * std::size(kPenalties)];
  size_t d = 0;
  for (const PenaltyEntry& e : kPenalties) {
    const bool free_ratio = e.l1_ratio < 0.0;
    const double r = e.l1_ratio;
    const char* vop = e.name;
    static std::string names[std::size(kPenalties)];
    std::string& bop_s = names[&e - kPenalties] = std::string(e.name) + "_backward";
    const char* bop = bop_s.c_str();
    const char* vdoc = (docs[d++] = e.value_doc + std::string(kSumNote) +
                                    args_doc(false, free_ratio) + raises_doc(false))
                           .c_str();
    const char* bdoc =
        (docs[d++] = e.grad_doc + args_doc(true, free_ratio) + raises_doc(true)).c_str();
    if (free_ratio) {
      m.def(
          vop,
          [=](py::handle w, RealArg wd, RealArg ratio) {
            return penalty_value(w, wd, &ratio, 0.0, vop);
          },
          arg("w"), arg("wd"), arg("l1_ratio") = 0.5, vdoc);
      m.def(
          bop,
          [=](py::handle grad, py::handle w, RealArg wd, RealArg ratio) {
            penalty_backward(grad, w, wd, &ratio, 0.0, bop);
          },
          arg("grad"), arg("w"), arg("wd"), arg("l1_ratio") = 0.5, bdoc);
    } else {
      m.def(
          vop, [=](py::handle w, RealArg wd) { return penalty_value(w, wd, nullptr, r, vop); },
          arg("w"), arg("wd"), vdoc);
      m.def(
          bop,
          [=](py::handle grad, py::handle w, RealArg wd) {
            penalty_backward(grad, w, wd, nullptr, r, bop);
          },
          arg("grad"), arg("w"), arg("wd"), bdoc);
    }
  }
}

}  // namespace pydl::bind
