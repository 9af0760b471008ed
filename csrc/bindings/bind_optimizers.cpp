// Bindings for the in-place optimizer updates (optimizers/optimizers.hpp): sgd_update,
// adam_update and adamw_update.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "common/dispatch.hpp"
#include "common/parallel.hpp"

namespace pydl::bind {
namespace {

// Elements per task (~15 us of streaming 3-4 arrays): smaller tasks made a small model's update
// slower with 2 threads than with 1 on a busy machine, where the worker may need waking.
constexpr int64_t kGrain = int64_t{1} << 17;

void require_nonnegative(double v, const char* op, const char* what) {
  if (!(v >= 0.0 && std::isfinite(v))) {
    std::ostringstream os;
    os << op << ": " << what << " must be a finite number >= 0, got " << v;
    throw py::value_error(os.str());
  }
}

void require_beta(double v, const char* op, const char* what) {
  if (!(v >= 0.0 && v < 1.0)) {
    std::ostringstream os;
    os << op << ": " << what << " must be in [0, 1), got " << v;
    throw py::value_error(os.str());
  }
}

// The arrays of one update, validated: param and the state buffers are updated in place (so they
// must already be writeable, C-contiguous and of param's dtype and shape: never copied); grad may
// be any strided view of the same dtype and shape and is made contiguous. No two may overlap.
struct Operands {
  DType dt = DType::kF32;
  py::array param;
  py::array grad;
  std::vector<py::array> state;
};

Operands check_operands(const char* op, py::handle param_obj, py::handle grad_obj,
                        const std::vector<std::pair<py::handle, const char*>>& state) {
  Operands o;
  const py::array param_in = require_array(param_obj, op, "param");
  o.dt = float_dtype(param_in, op, "param");
  const Shape shape = shape_of(param_in);
  o.param = inout(param_in, shape, o.dt, op, "param");
  const py::array grad_in = require_array(grad_obj, op, "grad");
  require_dtype(grad_in, o.dt, op, "grad");
  require_same_shape(param_in, grad_in, op, "param", "grad");
  require_no_overlap(o.param, grad_in, op, "param", "grad");
  std::vector<std::pair<py::array, const char*>> seen = {{o.param, "param"}, {grad_in, "grad"}};
  for (const auto& [obj, name] : state) {
    py::array a = inout(obj, shape, o.dt, op, name);
    for (const auto& [prev, prev_name] : seen) require_no_overlap(a, prev, op, name, prev_name);
    seen.emplace_back(a, name);
    o.state.push_back(a);
  }
  o.grad = contiguous(grad_in);
  return o;
}

// Validates SGD's hyper-parameters (ValueError naming the bad one) and returns the kernel scalars.
SgdScalars sgd_scalars(const char* op, double lr, double momentum, double dampening,
                       bool nesterov, double weight_decay, bool first_step) {
  require_nonnegative(lr, op, "lr");
  require_nonnegative(momentum, op, "momentum");
  require_range(dampening, 0.0, 1.0, op, "dampening");
  require_nonnegative(weight_decay, op, "weight_decay");
  if (nesterov && (momentum <= 0.0 || dampening != 0.0)) {
    std::ostringstream os;
    os << op << ": nesterov=True requires momentum > 0 and dampening == 0, got momentum="
       << momentum << ", dampening=" << dampening;
    throw py::value_error(os.str());
  }
  SgdScalars s;
  s.lr = lr;
  s.momentum = momentum;
  s.dampening = dampening;
  s.weight_decay = weight_decay;
  s.nesterov = nesterov;
  s.first_step = first_step;
  return s;
}

void sgd_update(py::handle param, py::handle grad, py::handle momentum_buffer, double lr,
                double momentum, double dampening, bool nesterov, double weight_decay,
                bool first_step) {
  const char* op = "sgd_update";
  const SgdScalars s =
      sgd_scalars(op, lr, momentum, dampening, nesterov, weight_decay, first_step);
  if (momentum != 0.0 && momentum_buffer.is_none()) {
    throw py::value_error(std::string(op) +
                          ": momentum_buffer is required when momentum != 0; pass "
                          "numpy.zeros_like(param) with first_step=True on the first step");
  }
  std::vector<std::pair<py::handle, const char*>> state;
  if (!momentum_buffer.is_none()) state.emplace_back(momentum_buffer, "momentum_buffer");
  Operands o = check_operands(op, param, grad, state);

  const int64_t n = o.param.size();
  auto run = [&](const auto& fns, auto* p) {
    using T = std::remove_pointer_t<decltype(p)>;
    T* buf = momentum != 0.0 ? ptr<T>(o.state[0]) : nullptr;
    const T* g = cptr<T>(o.grad);
    py::gil_scoped_release release;
    parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) {
      fns.sgd(p + b, buf ? buf + b : nullptr, g + b, e - b, s);
    });
  };
  const OptimTable& t = kernels().optim;
  if (o.dt == DType::kF32) run(t.f32, ptr<float>(o.param));
  else run(t.f64, ptr<double>(o.param));
}

// The items of a list argument of sgd_update_multi: a list or tuple (not an array).
std::vector<py::handle> items_of(py::handle seq, const char* op, const char* arg) {
  if (!py::isinstance<py::list>(seq) && !py::isinstance<py::tuple>(seq)) {
    throw py::type_error(std::string(op) + ": " + arg + " must be a list or tuple of arrays, got " +
                         std::string(py::str(py::type::handle_of(seq).attr("__name__"))));
  }
  std::vector<py::handle> out;
  for (py::handle h : seq) out.push_back(h);
  return out;
}

// One update over many parameters: every item is checked as sgd_update checks its arguments, the
// items share one dtype and no written array overlaps any other array. The elements of all items
// form one index range that parallel_chunks splits, so one pool dispatch serves every parameter;
// each element gets exactly the arithmetic of sgd_update (the kernels are element-wise).
void sgd_update_multi(py::handle params, py::handle grads, py::handle momentum_buffers, double lr,
                      double momentum, double dampening, bool nesterov, double weight_decay,
                      bool first_step) {
  const char* op = "sgd_update_multi";
  const SgdScalars s =
      sgd_scalars(op, lr, momentum, dampening, nesterov, weight_decay, first_step);
  const std::vector<py::handle> ps = items_of(params, op, "params");
  const std::vector<py::handle> gs = items_of(grads, op, "grads");
  std::vector<py::handle> bs;
  if (momentum != 0.0) {
    if (momentum_buffers.is_none()) {
      throw py::value_error(std::string(op) +
                            ": momentum_buffers is required when momentum != 0 (one buffer per "
                            "parameter; use first_step=True on their first step)");
    }
    bs = items_of(momentum_buffers, op, "momentum_buffers");
  } else if (!momentum_buffers.is_none()) {
    bs = items_of(momentum_buffers, op, "momentum_buffers");
  }
  // Compare against None, not bs.empty(): an empty buffer list for non-empty params must fail
  // here, or the update below would read state[0] of items that have no buffer.
  const bool have_buffers = !momentum_buffers.is_none();
  if (gs.size() != ps.size() || (have_buffers && bs.size() != ps.size())) {
    std::ostringstream os;
    os << op << ": params, grads and momentum_buffers must have the same length, got "
       << ps.size() << ", " << gs.size() << " and "
       << (momentum_buffers.is_none() ? std::string("None") : std::to_string(bs.size()));
    throw py::value_error(os.str());
  }
  std::vector<Operands> items;
  items.reserve(ps.size());
  for (size_t i = 0; i < ps.size(); ++i) {
    // The item's index goes into the message only when a check fails (building it for every
    // item would cost more than the checks).
    const auto where = [&] { return std::string(op) + " (item " + std::to_string(i) + ")"; };
    std::vector<std::pair<py::handle, const char*>> state;
    if (have_buffers) state.emplace_back(bs[i], "momentum_buffer");
    try {
      items.push_back(check_operands(op, ps[i], gs[i], state));
    } catch (const py::type_error& e) {
      throw py::type_error(where() + std::string(e.what()).substr(std::string(op).size()));
    } catch (const py::value_error& e) {
      throw py::value_error(where() + std::string(e.what()).substr(std::string(op).size()));
    }
    if (items.back().dt != items.front().dt) {
      throw py::type_error(where() + ": all parameters must share one dtype, got " +
                           dtype_name(items.front().dt) + " and " + dtype_name(items.back().dt));
    }
  }
  // No written array (a parameter or buffer) may overlap any other array: sort the byte ranges
  // (all C-contiguous here; a strided gradient was copied) and sweep them once, remembering how
  // far the ranges seen so far reach (any, and written ones).
  struct Span {
    uintptr_t lo, hi;
    bool written;
    size_t item;
  };
  std::vector<Span> spans;
  auto add = [&](const py::array& a, bool written, size_t item) {
    if (a.size() == 0) return;
    const auto lo = reinterpret_cast<uintptr_t>(a.data());
    spans.push_back({lo, lo + static_cast<uintptr_t>(a.nbytes()), written, item});
  };
  for (size_t i = 0; i < items.size(); ++i) {
    add(items[i].param, true, i);
    add(items[i].grad, false, i);
    for (const auto& a : items[i].state) add(a, true, i);
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.lo < b.lo; });
  const Span* reach_any = nullptr;
  const Span* reach_written = nullptr;
  for (const Span& sp : spans) {
    const Span* hit = sp.written ? reach_any : reach_written;
    if (hit && sp.lo < hit->hi) {
      throw py::value_error(std::string(op) + ": items " + std::to_string(hit->item) + " and " +
                            std::to_string(sp.item) + " share memory");
    }
    if (!reach_any || sp.hi > reach_any->hi) reach_any = &sp;
    if (sp.written && (!reach_written || sp.hi > reach_written->hi)) reach_written = &sp;
  }
  if (items.empty()) return;
  std::vector<int64_t> start(items.size() + 1, 0);
  for (size_t i = 0; i < items.size(); ++i) start[i + 1] = start[i] + items[i].param.size();

  auto run = [&](const auto& fns, auto tag) {
    using T = decltype(tag);
    struct Seg {
      T* p;
      T* buf;
      const T* g;
    };
    std::vector<Seg> segs;
    for (auto& o : items)
      segs.push_back({ptr<T>(o.param), momentum != 0.0 ? ptr<T>(o.state[0]) : nullptr,
                      cptr<T>(o.grad)});
    py::gil_scoped_release release;
    parallel_chunks(start.back(), kGrain, [&](int64_t b, int64_t e) {
      // The items overlapping [b, e), each from its own offset.
      for (size_t i = 0; i < segs.size(); ++i) {
        const int64_t lo = b > start[i] ? b : start[i];
        const int64_t hi = e < start[i + 1] ? e : start[i + 1];
        if (lo >= hi) continue;
        const int64_t off = lo - start[i];
        const Seg& sg = segs[i];
        fns.sgd(sg.p + off, sg.buf ? sg.buf + off : nullptr, sg.g + off, hi - lo, s);
      }
    });
  };
  const OptimTable& t = kernels().optim;
  if (items.front().dt == DType::kF32) run(t.f32, float{});
  else run(t.f64, double{});
}

void adam_like_update(const char* op, bool decoupled, py::handle param, py::handle grad,
                      py::handle exp_avg, py::handle exp_avg_sq, int64_t step, double lr,
                      double beta1, double beta2, double eps, double weight_decay) {
  if (step < 1) {
    throw py::value_error(std::string(op) + ": step must be >= 1 (the 1-based number of this " +
                          "step), got " + std::to_string(step));
  }
  require_nonnegative(lr, op, "lr");
  require_beta(beta1, op, "beta1");
  require_beta(beta2, op, "beta2");
  require_nonnegative(eps, op, "eps");
  require_nonnegative(weight_decay, op, "weight_decay");
  Operands o = check_operands(op, param, grad, {{exp_avg, "exp_avg"}, {exp_avg_sq, "exp_avg_sq"}});

  AdamScalars s;
  s.beta1 = beta1;
  s.beta2 = beta2;
  s.eps = eps;
  s.weight_decay = weight_decay;
  s.step_size = lr / (1.0 - std::pow(beta1, static_cast<double>(step)));
  s.bc2_sqrt = std::sqrt(1.0 - std::pow(beta2, static_cast<double>(step)));
  s.decay = 1.0 - lr * weight_decay;
  s.decoupled = decoupled;
  const int64_t n = o.param.size();
  auto run = [&](const auto& fns, auto* p) {
    using T = std::remove_pointer_t<decltype(p)>;
    T* m = ptr<T>(o.state[0]);
    T* v = ptr<T>(o.state[1]);
    const T* g = cptr<T>(o.grad);
    py::gil_scoped_release release;
    parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) {
      fns.adam(p + b, m + b, v + b, g + b, e - b, s);
    });
  };
  const OptimTable& t = kernels().optim;
  if (o.dt == DType::kF32) run(t.f32, ptr<float>(o.param));
  else run(t.f64, ptr<double>(o.param));
}

constexpr const char* kStateRules = R"doc(
All arrays share one shape and dtype (float32 or float64). ``param`` and the state buffers are
updated in place, so they must be writeable and C-contiguous (they are never replaced by a copy);
``grad`` may be any strided view. No two arrays may share memory.)doc";

}  // namespace

void bind_optimizers(py::module_& m) {
  m.def("sgd_update", &sgd_update, py::arg("param"), py::arg("grad"),
        py::arg("momentum_buffer") = py::none(), py::kw_only(), py::arg("lr"),
        py::arg("momentum") = 0.0, py::arg("dampening") = 0.0, py::arg("nesterov") = false,
        py::arg("weight_decay") = 0.0, py::arg("first_step") = false,
        (std::string(R"doc(Apply one torch.optim.SGD step to a parameter in place.

d = grad + weight_decay * param; with momentum != 0 the buffer becomes d on the first step and
momentum * buf + (1 - dampening) * d afterwards, and d becomes d + momentum * buf (nesterov) or
buf; finally param -= lr * d.
)doc") + kStateRules + R"doc(

Args:
    param: the parameter, updated in place.
    grad: its gradient.
    momentum_buffer: the momentum state, updated in place; required when momentum != 0, unused
        (but still checked) otherwise. Default None.
    lr: learning rate >= 0 (required, keyword-only).
    momentum: momentum factor >= 0. Default 0.0.
    dampening: dampening in [0, 1]. Default 0.0.
    nesterov: Nesterov momentum (needs momentum > 0 and dampening == 0). Default False.
    weight_decay: L2 penalty >= 0 added to the gradient. Default 0.0.
    first_step: initialise momentum_buffer with d instead of updating it (PyTorch's first step).
        Default False.

Returns:
    None.

Raises:
    TypeError: a non-array or a dtype mismatch.
    ValueError: shapes differ (both are named); param or momentum_buffer read-only or not
        C-contiguous; arrays sharing memory; momentum_buffer missing; a negative, infinite or NaN
        hyper-parameter (named); nesterov without momentum or with dampening.
)doc")
            .c_str());

  m.def("sgd_update_multi", &sgd_update_multi, py::arg("params"), py::arg("grads"),
        py::arg("momentum_buffers") = py::none(), py::kw_only(), py::arg("lr"),
        py::arg("momentum") = 0.0, py::arg("dampening") = 0.0, py::arg("nesterov") = false,
        py::arg("weight_decay") = 0.0, py::arg("first_step") = false,
        (std::string(R"doc(Apply one torch.optim.SGD step to many parameters in place, in one call.

Each parameter gets exactly the update of sgd_update (same bits); one call instead of one per
parameter saves the per-call overhead and uses the thread pool once for all of them.
Item i of each list belongs together; the arrays of one item follow sgd_update's rules:)doc") +
         kStateRules + R"doc( Items may have different shapes but share one dtype, and no
parameter or buffer may share memory with any other array.

Args:
    params: list or tuple of parameters, updated in place.
    grads: list or tuple of their gradients, same length.
    momentum_buffers: list or tuple of momentum states, updated in place; required when
        momentum != 0. Default None.
    lr: learning rate >= 0 (required, keyword-only).
    momentum: momentum factor >= 0. Default 0.0.
    dampening: dampening in [0, 1]. Default 0.0.
    nesterov: Nesterov momentum (needs momentum > 0 and dampening == 0). Default False.
    weight_decay: L2 penalty >= 0 added to the gradient. Default 0.0.
    first_step: initialise every momentum buffer with d (PyTorch's first step). Default False.

Returns:
    None.

Raises:
    TypeError: a list argument that is not a list/tuple, a non-array item, a dtype mismatch
        within an item or between items.
    ValueError: lists of different lengths; an item's shapes differ (both named, with the item
        index); a read-only or non-C-contiguous parameter or buffer; arrays sharing memory;
        momentum_buffers missing; a negative, infinite or NaN hyper-parameter (named); nesterov
        without momentum or with dampening.
)doc")
            .c_str());

  const std::string adam_doc = std::string(R"doc(

m = beta1 * m + (1 - beta1) * g; v = beta2 * v + (1 - beta2) * g^2;
param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps).
)doc") + kStateRules + R"doc(

Args:
    param: the parameter, updated in place.
    grad: its gradient.
    exp_avg: first-moment state m, updated in place (zeros before the first step).
    exp_avg_sq: second-moment state v, updated in place (zeros before the first step).
    step: the 1-based number of this step, >= 1 (keyword-only, required).
    lr: learning rate >= 0. Default 1e-3.
    beta1: decay of m, in [0, 1). Default 0.9.
    beta2: decay of v, in [0, 1). Default 0.999.
    eps: added to the denominator, >= 0. Default 1e-8.
)doc";
  const std::string raises = R"doc(
Returns:
    None.

Raises:
    TypeError: a non-array or a dtype mismatch.
    ValueError: shapes differ (both are named); param or a state buffer read-only or not
        C-contiguous; arrays sharing memory; step < 1; an out-of-range or NaN hyper-parameter
        (named).
)doc";

  m.def(
      "adam_update",
      [](py::handle param, py::handle grad, py::handle exp_avg, py::handle exp_avg_sq,
         int64_t step, double lr, double beta1, double beta2, double eps, double weight_decay) {
        adam_like_update("adam_update", false, param, grad, exp_avg, exp_avg_sq, step, lr, beta1,
                         beta2, eps, weight_decay);
      },
      py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
      py::kw_only(), py::arg("step"), py::arg("lr") = 1e-3, py::arg("beta1") = 0.9,
      py::arg("beta2") = 0.999, py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0,
      ("Apply one torch.optim.Adam step to a parameter in place.\n\ng = grad + weight_decay * "
       "param (coupled L2, as in torch.optim.Adam);" +
       adam_doc + "    weight_decay: L2 penalty >= 0 added to the gradient. Default 0.0.\n" +
       raises)
          .c_str());

  m.def(
      "adamw_update",
      [](py::handle param, py::handle grad, py::handle exp_avg, py::handle exp_avg_sq,
         int64_t step, double lr, double beta1, double beta2, double eps, double weight_decay) {
        adam_like_update("adamw_update", true, param, grad, exp_avg, exp_avg_sq, step, lr, beta1,
                         beta2, eps, weight_decay);
      },
      py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
      py::kw_only(), py::arg("step"), py::arg("lr") = 1e-3, py::arg("beta1") = 0.9,
      py::arg("beta2") = 0.999, py::arg("eps") = 1e-8, py::arg("weight_decay") = 1e-2,
      ("Apply one torch.optim.AdamW step to a parameter in place.\n\nparam *= 1 - lr * "
       "weight_decay first (decoupled decay, as in torch.optim.AdamW), then with g = grad:" +
       adam_doc + "    weight_decay: decoupled decay >= 0. Default 1e-2.\n" + raises)
          .c_str());
}

}  // namespace pydl::bind
