// Bindings for the in-place optimizer updates (optimizers/optimizers.hpp): sgd_update,
// adam_update and adamw_update for one parameter, and their all-or-nothing *_multi versions that
// pydl.optim uses for all parameters at once.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "common/dispatch.hpp"

namespace pydl::bind {
namespace {

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
  py::array param = no_array();
  py::array grad = no_array();
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

  by_dtype(o.dt, [&](auto zero) {
    using T = decltype(zero);
    nogil(optimizers::sgd<T>, ptr<T>(o.param), momentum != 0.0 ? ptr<T>(o.state[0]) : nullptr,
          cptr<T>(o.grad), int64_t(o.param.size()), s);
  });
}

// The items of a list argument of a *_multi update: a list or tuple (not an array).
std::vector<py::handle> items_of(py::handle seq, const char* op, const char* arg) {
  if (!py::isinstance<py::list>(seq) && !py::isinstance<py::tuple>(seq)) {
    throw py::type_error(std::string(op) + ": " + arg + " must be a list or tuple of arrays, got " +
                         std::string(py::str(py::type::handle_of(seq).attr("__name__"))));
  }
  std::vector<py::handle> out;
  for (py::handle h : seq) out.push_back(h);
  return out;
}

// A hyper-parameter of a *_multi update: one value for every item, or a list/tuple with one value
// per item (parameters of different groups, or at different Adam steps, share one call).
template <typename V, typename Convert>
std::vector<V> per_item(py::handle v, size_t n, const char* op, const char* name,
                        Convert convert) {
  if (py::isinstance<py::list>(v) || py::isinstance<py::tuple>(v)) {
    const std::vector<py::handle> items = items_of(v, op, name);
    if (items.size() != n) {
      throw py::value_error(std::string(op) + ": " + name + " has " +
                            std::to_string(items.size()) + " values but there are " +
                            std::to_string(n) + " parameters; pass one value or one per parameter");
    }
    std::vector<V> out;
    for (py::handle h : items) out.push_back(convert(h));
    return out;
  }
  return std::vector<V>(n, convert(v));
}

std::vector<double> per_item_double(py::handle v, size_t n, const char* op, const char* name) {
  return per_item<double>(v, n, op, name, [&](py::handle h) {
    const double d = PyFloat_AsDouble(h.ptr());
    if (d == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();
      throw py::type_error(std::string(op) + ": " + name + " must be a number or a list of " +
                           "numbers, got " +
                           std::string(py::str(py::type::handle_of(h).attr("__name__"))));
    }
    return d;
  });
}

std::vector<bool> per_item_flag(py::handle v, size_t n, const char* op, const char* name) {
  return per_item<bool>(v, n, op, name, [&](py::handle h) {
    const int t = PyObject_IsTrue(h.ptr());
    if (t < 0) throw py::error_already_set();
    return t != 0;
  });
}

std::vector<int64_t> per_item_int(py::handle v, size_t n, const char* op, const char* name) {
  return per_item<int64_t>(v, n, op, name, [&](py::handle h) {
    if (!PyLong_Check(h.ptr()) && !PyIndex_Check(h.ptr())) {
      throw py::type_error(std::string(op) + ": " + name + " must be an int or a list of ints, " +
                           "got " + std::string(py::str(py::type::handle_of(h).attr("__name__"))));
    }
    int overflow = 0;
    py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(h.ptr()));
    if (!index) {  // e.g. a 0-d float array, which claims __index__ and then refuses it
      PyErr_Clear();
      throw py::type_error(std::string(op) + ": " + name + " must be an int or a list of ints, " +
                           "got " + std::string(py::str(py::repr(h))));
    }
    const long long x = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
    if (overflow != 0) {
      throw py::value_error(std::string(op) + ": " + name + " does not fit in 64 bits");
    }
    return static_cast<int64_t>(x);
  });
}

// The item lists a *_multi entry last accepted on this thread, as everything its checks read of
// each array: data pointer, dtype, shape, strides and flags. The checks are a function of exactly
// these, so a call whose arrays match them (an optimizer's every step: the same parameters,
// gradients and state buffers) skips the checks and only borrows the arrays. No reference is
// kept: a freed array's properties reappearing in another one are checked as fine again, rightly.
struct ItemsMemo {
  std::vector<intptr_t> key;
  DType dt = DType::kF32;
};

// Appends a's properties to key; false when a is not an ndarray (the full checks then report it).
bool add_fingerprint(py::handle a, std::vector<intptr_t>& key) {
  if (a.is_none()) {
    key.push_back(0);
    return true;
  }
  const auto& api = py::detail::npy_api::get();
  if (!api.PyArray_Check_(a.ptr())) return false;
  const auto* arr = py::detail::array_proxy(a.ptr());
  key.push_back(reinterpret_cast<intptr_t>(arr->data));
  const auto* descr = py::detail::array_descriptor_proxy(arr->descr);
  key.push_back(descr->type_num);
  key.push_back(descr->byteorder);
  key.push_back(arr->flags);
  key.push_back(arr->nd);
  for (int d = 0; d < arr->nd; ++d) {
    key.push_back(arr->dimensions[d]);
    key.push_back(arr->strides[d]);
  }
  return true;
}

std::vector<Operands> check_items_fully(
    const char* op, const std::vector<py::handle>& ps, const std::vector<py::handle>& gs,
    const std::vector<std::vector<std::pair<py::handle, const char*>>>& states);

// Checks the items of a *_multi update: every item as the single-parameter update checks its
// arguments (errors name the item), one dtype for all, and no written array (a parameter or a
// state buffer) overlapping any other array of any item. `memo` remembers the last accepted lists.
std::vector<Operands> check_items(
    const char* op, const std::vector<py::handle>& ps, const std::vector<py::handle>& gs,
    const std::vector<std::vector<std::pair<py::handle, const char*>>>& states, ItemsMemo& memo) {
  std::vector<intptr_t> key;
  bool known = true;
  for (size_t i = 0; i < ps.size() && known; ++i) {
    known = add_fingerprint(ps[i], key) && add_fingerprint(gs[i], key);
    for (const auto& st : states[i]) known = known && add_fingerprint(st.first, key);
  }
  if (known && !key.empty() && key == memo.key) {
    std::vector<Operands> items(ps.size());
    for (size_t i = 0; i < ps.size(); ++i) {
      items[i].dt = memo.dt;
      items[i].param = py::reinterpret_borrow<py::array>(ps[i]);
      items[i].grad = py::reinterpret_borrow<py::array>(gs[i]);
      for (const auto& st : states[i])
        items[i].state.push_back(py::reinterpret_borrow<py::array>(st.first));
    }
    return items;
  }
  memo.key.clear();
  std::vector<Operands> items = check_items_fully(op, ps, gs, states);
  // Remember only lists used as they are (a strided gradient is copied on every call).
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].param.ptr() != ps[i].ptr() || items[i].grad.ptr() != gs[i].ptr()) known = false;
    for (size_t j = 0; j < items[i].state.size(); ++j)
      if (items[i].state[j].ptr() != states[i][j].first.ptr()) known = false;
  }
  if (known && !items.empty()) {
    memo.key = std::move(key);
    memo.dt = items.front().dt;
  }
  return items;
}

std::vector<Operands> check_items_fully(
    const char* op, const std::vector<py::handle>& ps, const std::vector<py::handle>& gs,
    const std::vector<std::vector<std::pair<py::handle, const char*>>>& states) {
  std::vector<Operands> items;
  items.reserve(ps.size());
  for (size_t i = 0; i < ps.size(); ++i) {
    // The item's index goes into the message only when a check fails (building it for every
    // item would cost more than the checks).
    const auto where = [&] { return std::string(op) + " (item " + std::to_string(i) + ")"; };
    try {
      items.push_back(check_operands(op, ps[i], gs[i], states[i]));
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
  // Sort the byte ranges (all C-contiguous here; a strided gradient was copied) and sweep them
  // once, remembering how far the ranges seen so far reach (any, and written ones).
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
  return items;
}

// pydl._core.NonFiniteUpdateError, created in bind_optimizers.
py::handle& non_finite_error_type() {
  static py::handle type;
  return type;
}

// Raises NonFiniteUpdateError with the item's index and what was not finite as attributes.
[[noreturn]] void raise_non_finite(const std::string& message, size_t item, const char* what) {
  const py::handle type = non_finite_error_type();
  py::object err = type(message);
  err.attr("item") = item;
  err.attr("what") = what;
  PyErr_SetObject(type.ptr(), err.ptr());
  throw py::error_already_set();
}

// Raises NonFiniteUpdateError for what refused a *_multi step (nothing was written).
[[noreturn]] void raise_refusal(const char* op, const optimizers::Refusal& r, DType dt) {
  if (r.what == optimizers::Refusal::kGrad) {
    raise_non_finite(std::string(op) + ": the gradient of item " + std::to_string(r.item) +
                         " holds NaN or Inf; nothing was updated (no parameter, no state)",
                     r.item, "grad");
  }
  std::ostringstream os;
  os << op << ": item " << r.item << ": this step would make exp_avg or exp_avg_sq infinite "
     << "(the gradient reaches " << r.grad_abs_max << " in magnitude, and its square overflows " << dtype_name(dt) << "); nothing was "
     << "updated (no parameter, no state). Scale the inputs or the loss down, or clip the "
     << "gradients";
  raise_non_finite(os.str(), r.item, "state");
}

// A *_multi update with its lists checked: the items (arrays borrowed or, for a strided gradient,
// a contiguous copy) and the scalars of each item. SGD items have sgd scalars; Adam items their
// hyper-parameters (the step-dependent scalars are made per call by adam_scalars).
struct MultiUpdate {
  const char* op = "";
  std::vector<Operands> items;
  std::vector<SgdScalars> sgd;  // SGD: one per item (momentum 0: the item has no buffer)
  bool decoupled = false;       // Adam: AdamW's decoupled weight decay
  std::vector<double> lr, beta1, beta2, eps, weight_decay;  // Adam: one per item
};

// The kernel call of a checked SGD update; NonFiniteUpdateError when it was refused.
void run_sgd(MultiUpdate& u) {
  if (u.items.empty()) return;
  const DType dt = u.items.front().dt;
  const optimizers::Refusal r = by_dtype(dt, [&](auto zero) {
    using T = decltype(zero);
    optimizers::SgdItems<T> k;
    for (size_t i = 0; i < u.items.size(); ++i) {
      Operands& o = u.items[i];
      k.param.push_back(ptr<T>(o.param));
      k.momentum_buf.push_back(u.sgd[i].momentum != 0.0 ? ptr<T>(o.state[0]) : nullptr);
      k.grad.push_back(cptr<T>(o.grad));
      k.size.push_back(o.param.size());
    }
    k.scalars = u.sgd;
    return nogil(optimizers::sgd_multi<T>, std::move(k));
  });
  if (r.what != optimizers::Refusal::kNone) raise_refusal(u.op, r, dt);
}

// Checks the arguments of an SGD *_multi update (see sgd_update_multi's docstring).
MultiUpdate prepare_sgd(py::handle params, py::handle grads, py::handle momentum_buffers,
                        py::handle lr, py::handle momentum, py::handle dampening,
                        py::handle nesterov, py::handle weight_decay, py::handle first_step,
                        ItemsMemo* memo) {
  MultiUpdate u;
  u.op = "sgd_update_multi";
  const char* op = u.op;
  const std::vector<py::handle> ps = items_of(params, op, "params");
  const std::vector<py::handle> gs = items_of(grads, op, "grads");
  const size_t n = ps.size();
  const std::vector<double> lrs = per_item_double(lr, n, op, "lr");
  const std::vector<double> moms = per_item_double(momentum, n, op, "momentum");
  const std::vector<double> damps = per_item_double(dampening, n, op, "dampening");
  const std::vector<bool> nests = per_item_flag(nesterov, n, op, "nesterov");
  const std::vector<double> wds = per_item_double(weight_decay, n, op, "weight_decay");
  const std::vector<bool> firsts = per_item_flag(first_step, n, op, "first_step");
  for (size_t i = 0; i < n; ++i) {
    u.sgd.push_back(sgd_scalars(op, lrs[i], moms[i], damps[i], nests[i], wds[i], firsts[i]));
  }
  const bool any_momentum = std::any_of(moms.begin(), moms.end(), [](double m) { return m != 0.0; });
  std::vector<py::handle> bs;
  if (!momentum_buffers.is_none()) {
    bs = items_of(momentum_buffers, op, "momentum_buffers");
  } else if (any_momentum) {
    throw py::value_error(std::string(op) +
                          ": momentum_buffers is required when momentum != 0 (one buffer per "
                          "parameter; use first_step=True on their first step)");
  }
  // Compare against None, not bs.empty(): an empty buffer list for non-empty params must fail
  // here, or the update below would read state[0] of items that have no buffer.
  const bool have_buffers = !momentum_buffers.is_none();
  if (gs.size() != n || (have_buffers && bs.size() != n)) {
    std::ostringstream os;
    os << op << ": params, grads and momentum_buffers must have the same length, got " << n
       << ", " << gs.size() << " and "
       << (have_buffers ? std::to_string(bs.size()) : std::string("None"));
    throw py::value_error(os.str());
  }
  std::vector<std::vector<std::pair<py::handle, const char*>>> states(n);
  for (size_t i = 0; i < n; ++i) {
    if (have_buffers && !bs[i].is_none()) {
      states[i].emplace_back(bs[i], "momentum_buffer");
    } else if (moms[i] != 0.0) {
      throw py::value_error(std::string(op) + " (item " + std::to_string(i) +
                            "): a momentum buffer is required when momentum != 0");
    }
  }
  u.items = memo != nullptr ? check_items(op, ps, gs, states, *memo)
                            : check_items_fully(op, ps, gs, states);
  return u;
}

// One SGD step of many parameters, all or nothing (optimizers::sgd_multi): a NaN/Inf gradient
// refuses the step; otherwise each element gets exactly the arithmetic of sgd_update.
void sgd_update_multi(py::handle params, py::handle grads, py::handle momentum_buffers,
                      py::handle lr, py::handle momentum, py::handle dampening,
                      py::handle nesterov, py::handle weight_decay, py::handle first_step) {
  thread_local ItemsMemo memo;
  MultiUpdate u = prepare_sgd(params, grads, momentum_buffers, lr, momentum, dampening, nesterov,
                              weight_decay, first_step, &memo);
  run_sgd(u);
}

// Validates Adam's hyper-parameters (ValueError naming the bad one) and returns the scalars of
// step `step` (1-based).
AdamScalars adam_scalars(const char* op, bool decoupled, int64_t step, double lr, double beta1,
                         double beta2, double eps, double weight_decay) {
  if (step < 1) {
    throw py::value_error(std::string(op) + ": step must be >= 1 (the 1-based number of this " +
                          "step), got " + std::to_string(step));
  }
  require_nonnegative(lr, op, "lr");
  require_beta(beta1, op, "beta1");
  require_beta(beta2, op, "beta2");
  require_nonnegative(eps, op, "eps");
  require_nonnegative(weight_decay, op, "weight_decay");
  AdamScalars s;
  s.beta1 = beta1;
  s.beta2 = beta2;
  s.eps = eps;
  s.weight_decay = weight_decay;
  s.step_size = lr / (1.0 - std::pow(beta1, static_cast<double>(step)));
  s.bc2_sqrt = std::sqrt(1.0 - std::pow(beta2, static_cast<double>(step)));
  s.decay = 1.0 - lr * weight_decay;
  s.decoupled = decoupled;
  return s;
}

void adam_like_update(const char* op, bool decoupled, py::handle param, py::handle grad,
                      py::handle exp_avg, py::handle exp_avg_sq, int64_t step, double lr,
                      double beta1, double beta2, double eps, double weight_decay) {
  const AdamScalars s = adam_scalars(op, decoupled, step, lr, beta1, beta2, eps, weight_decay);
  Operands o = check_operands(op, param, grad, {{exp_avg, "exp_avg"}, {exp_avg_sq, "exp_avg_sq"}});
  by_dtype(o.dt, [&](auto zero) {
    using T = decltype(zero);
    nogil(optimizers::adam<T>, ptr<T>(o.param), ptr<T>(o.state[0]), ptr<T>(o.state[1]),
          cptr<T>(o.grad), int64_t(o.param.size()), s);
  });
}

// The kernel call of a checked Adam/AdamW update at the given (1-based) step of each item;
// NonFiniteUpdateError when it was refused.
void run_adam(MultiUpdate& u, const std::vector<int64_t>& steps) {
  if (u.items.empty()) return;
  const DType dt = u.items.front().dt;
  std::vector<AdamScalars> scalars;
  scalars.reserve(u.items.size());
  for (size_t i = 0; i < u.items.size(); ++i) {
    scalars.push_back(adam_scalars(u.op, u.decoupled, steps[i], u.lr[i], u.beta1[i], u.beta2[i],
                                   u.eps[i], u.weight_decay[i]));
  }
  const optimizers::Refusal r = by_dtype(dt, [&](auto zero) {
    using T = decltype(zero);
    optimizers::AdamItems<T> k;
    for (Operands& o : u.items) {
      k.param.push_back(ptr<T>(o.param));
      k.exp_avg.push_back(ptr<T>(o.state[0]));
      k.exp_avg_sq.push_back(ptr<T>(o.state[1]));
      k.grad.push_back(cptr<T>(o.grad));
      k.size.push_back(o.param.size());
    }
    k.scalars = std::move(scalars);
    return nogil(optimizers::adam_multi<T>, std::move(k));
  });
  if (r.what != optimizers::Refusal::kNone) raise_refusal(u.op, r, dt);
}

// Checks the arguments of an Adam/AdamW *_multi update (see adam_update_multi's docstring); the
// steps go to *steps (or, when steps is None, are not read: a prepared update reads them from
// the optimizer state on each call).
MultiUpdate prepare_adam(const char* op, bool decoupled, py::handle params, py::handle grads,
                         py::handle exp_avgs, py::handle exp_avg_sqs, py::handle steps,
                         py::handle lr, py::handle beta1, py::handle beta2, py::handle eps,
                         py::handle weight_decay, std::vector<int64_t>* step_v,
                         ItemsMemo* memo) {
  MultiUpdate u;
  u.op = op;
  u.decoupled = decoupled;
  const std::vector<py::handle> ps = items_of(params, op, "params");
  const std::vector<py::handle> gs = items_of(grads, op, "grads");
  const std::vector<py::handle> ms = items_of(exp_avgs, op, "exp_avgs");
  const std::vector<py::handle> vs = items_of(exp_avg_sqs, op, "exp_avg_sqs");
  const size_t n = ps.size();
  if (gs.size() != n || ms.size() != n || vs.size() != n) {
    std::ostringstream os;
    os << op << ": params, grads, exp_avgs and exp_avg_sqs must have the same length, got " << n
       << ", " << gs.size() << ", " << ms.size() << " and " << vs.size();
    throw py::value_error(os.str());
  }
  const std::vector<int64_t> given =
      step_v != nullptr ? per_item_int(steps, n, op, "steps") : std::vector<int64_t>(n, 1);
  u.lr = per_item_double(lr, n, op, "lr");
  u.beta1 = per_item_double(beta1, n, op, "beta1");
  u.beta2 = per_item_double(beta2, n, op, "beta2");
  u.eps = per_item_double(eps, n, op, "eps");
  u.weight_decay = per_item_double(weight_decay, n, op, "weight_decay");
  std::vector<std::vector<std::pair<py::handle, const char*>>> states;
  for (size_t i = 0; i < n; ++i) {
    adam_scalars(op, decoupled, given[i], u.lr[i], u.beta1[i], u.beta2[i], u.eps[i],
                 u.weight_decay[i]);  // validates
    states.push_back({{ms[i], "exp_avg"}, {vs[i], "exp_avg_sq"}});
  }
  u.items = memo != nullptr ? check_items(op, ps, gs, states, *memo)
                            : check_items_fully(op, ps, gs, states);
  if (step_v != nullptr) *step_v = given;
  return u;
}

// One Adam/AdamW step of many parameters, all or nothing (optimizers::adam_multi): a NaN/Inf
// gradient, or a step that would make an item's new state infinite, writes nothing.
void adam_like_update_multi(const char* op, bool decoupled, py::handle params, py::handle grads,
                            py::handle exp_avgs, py::handle exp_avg_sqs, py::handle steps,
                            py::handle lr, py::handle beta1, py::handle beta2, py::handle eps,
                            py::handle weight_decay) {
  thread_local ItemsMemo memos[2];  // Adam, AdamW
  std::vector<int64_t> step_v;
  MultiUpdate u = prepare_adam(op, decoupled, params, grads, exp_avgs, exp_avg_sqs, steps,
                                     lr, beta1, beta2, eps, weight_decay, &step_v,
                                     &memos[decoupled ? 1 : 0]);
  run_adam(u, step_v);
}

// A *_multi update checked once and run again by calling it: pydl.optim's step plan (_Plan in
// pydl/optim/__init__.py), which calls it while the optimizer's parameters, gradients and state
// are the same objects. A call compares every array's fingerprint (data pointer, dtype, shape,
// strides, flags: all the checks read) with the checked one and returns False, running nothing,
// when one changed in place; the caller then takes the full path. An Adam update reads each
// item's "step" from its state dict and, once the kernel accepted the step, stores step + 1 there:
// all inside one call, so a Ctrl-C (handled between Python bytecodes) cannot split it. Not for
// concurrent calls (scratch_ and steps_ are members): the optimizer calls it under its lock.
class PreparedUpdate {
 public:
  PreparedUpdate(MultiUpdate u, bool adam, std::vector<py::dict> states)
      : u_(std::move(u)), adam_(adam), states_(std::move(states)) {
    fingerprint(key_);
  }

  bool operator()() {
    scratch_.clear();
    fingerprint(scratch_);
    if (scratch_ != key_) return false;
    if (!adam_) {
      run_sgd(u_);
      return true;
    }
    const size_t n = u_.items.size();
    steps_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const py::handle s = PyDict_GetItemString(states_[i].ptr(), "step");
      if (!s || !PyLong_Check(s.ptr())) return false;  // the full path reports it
      const long long v = PyLong_AsLongLong(s.ptr());
      if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return false;
      }
      if (v < 0 || v == std::numeric_limits<long long>::max()) return false;  // reported there
      steps_[i] = static_cast<int64_t>(v) + 1;
    }
    run_adam(u_, steps_);
    for (size_t i = 0; i < n; ++i) states_[i]["step"] = py::int_(steps_[i]);
    return true;
  }

 private:
  void fingerprint(std::vector<intptr_t>& key) const {
    for (const Operands& o : u_.items) {
      add_fingerprint(o.param, key);
      add_fingerprint(o.grad, key);
      for (const py::array& a : o.state) add_fingerprint(a, key);
    }
  }

  MultiUpdate u_;
  bool adam_;
  std::vector<py::dict> states_;
  std::vector<intptr_t> key_, scratch_;
  std::vector<int64_t> steps_;
};

// The prepared update, or None when an item's gradient had to be copied (strided): a prepared
// call would read the stale copy.
py::object prepared_or_none(MultiUpdate u, const std::vector<py::handle>& grads, bool adam,
                            std::vector<py::dict> states) {
  for (size_t i = 0; i < u.items.size(); ++i) {
    if (u.items[i].grad.ptr() != grads[i].ptr()) return py::none();
  }
  return py::cast(PreparedUpdate(std::move(u), adam, std::move(states)));
}

constexpr const char* kStateRules = R"doc(
All arrays share one shape and dtype (float32 or float64). ``param`` and the state buffers are
updated in place, so they must be writeable and C-contiguous (they are never replaced by a copy);
``grad`` may be any strided view. No two arrays may share memory.)doc";

}  // namespace

void bind_optimizers(py::module_& m) {
  // FloatingPointError's subclass, so `except FloatingPointError` catches it too.
  PyObject* exc = PyErr_NewExceptionWithDoc(
      "pydl._core.NonFiniteUpdateError",
      "An optimizer update was refused because a gradient, or the new optimizer state, would not "
      "be finite; nothing was written. Attributes: item (the index in the lists passed), what "
      "(\"grad\" or \"state\"), and, when raised by a pydl.optim optimizer, index and param.",
      PyExc_FloatingPointError, nullptr);
  if (exc == nullptr) throw py::error_already_set();
  m.add_object("NonFiniteUpdateError", py::reinterpret_steal<py::object>(exc));
  non_finite_error_type() = m.attr("NonFiniteUpdateError");
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
        (std::string(R"doc(Apply one torch.optim.SGD step to many parameters in place, all or nothing.

Each parameter gets exactly the update of sgd_update (same bits); one call instead of one per
parameter saves the per-call overhead and uses the thread pool once for all of them. All
gradients are scanned first: if any holds a NaN or an infinity, NonFiniteUpdateError is raised
and nothing is written (no parameter, no buffer).
Item i of each list belongs together; the arrays of one item follow sgd_update's rules:)doc") +
         kStateRules + R"doc( Items may have different shapes but share one dtype, and no
parameter or buffer may share memory with any other array. Every hyper-parameter is one value
for all items or a list/tuple with one value per item (e.g. parameters of several groups).

Args:
    params: list or tuple of parameters, updated in place.
    grads: list or tuple of their gradients, same length.
    momentum_buffers: list or tuple of momentum states, updated in place; required when
        momentum != 0 (an entry may be None for an item whose momentum is 0). Default None.
    lr: learning rate >= 0 (required, keyword-only).
    momentum: momentum factor >= 0. Default 0.0.
    dampening: dampening in [0, 1]. Default 0.0.
    nesterov: Nesterov momentum (needs momentum > 0 and dampening == 0). Default False.
    weight_decay: L2 penalty >= 0 added to the gradient. Default 0.0.
    first_step: initialise the momentum buffer with d (PyTorch's first step). Default False.

Returns:
    None.

Raises:
    NonFiniteUpdateError: a gradient holds NaN or Inf (``.item`` is its index, ``.what`` is
        "grad"); nothing was written.
    TypeError: a list argument that is not a list/tuple, a non-array item, a dtype mismatch
        within an item or between items, a non-numeric hyper-parameter.
    ValueError: lists of different lengths (hyper-parameter lists too); an item's shapes differ
        (both named, with the item index); a read-only or non-C-contiguous parameter or buffer;
        arrays sharing memory; a momentum buffer missing; a negative, infinite or NaN
        hyper-parameter (named); nesterov without momentum or with dampening.
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

  const std::string multi_doc = std::string(R"doc(

Every item gets exactly the update of the single-parameter kernel (same bits), in one call that
is all or nothing: the gradients are scanned first, and if any holds a NaN or an infinity, or
the step would make an item's exp_avg or exp_avg_sq infinite (a finite gradient whose square
overflows, e.g. |g| > 1.8e19 in float32), NonFiniteUpdateError is raised and nothing is written.
The overflow check costs nothing extra unless some gradient exceeds sqrt(max) / 4 of its dtype;
it assumes the incoming exp_avg and exp_avg_sq are finite, which these kernels keep so.
Item i of each list belongs together and follows the single kernel's rules;)doc") +
                               kStateRules + R"doc( Items share one dtype, no parameter or state
buffer may share memory with any other array, and every hyper-parameter (and ``steps``) is one
value for all items or a list/tuple with one value per item.

Args:
    params: list or tuple of parameters, updated in place.
    grads: their gradients.
    exp_avgs: first-moment states, updated in place (zeros before an item's first step).
    exp_avg_sqs: second-moment states, updated in place (zeros before an item's first step).
    steps: the 1-based number of this step, >= 1, per item or for all (keyword-only, required).
    lr: learning rate >= 0. Default 1e-3.
    beta1: decay of m, in [0, 1). Default 0.9.
    beta2: decay of v, in [0, 1). Default 0.999.
    eps: added to the denominator, >= 0. Default 1e-8.
)doc";
  const std::string multi_raises = R"doc(
Returns:
    None.

Raises:
    NonFiniteUpdateError: a NaN/Inf gradient (``.what == "grad"``) or an overflowing new state
        (``.what == "state"``); ``.item`` is the item's index. Nothing was written.
    TypeError: a list argument that is not a list/tuple, a non-array item, a dtype mismatch.
    ValueError: lists of different lengths; an item's shapes differ; a read-only or
        non-C-contiguous parameter or state buffer; arrays sharing memory; a step < 1; an
        out-of-range or NaN hyper-parameter (named).
)doc";
  m.def(
      "adam_update_multi",
      [](py::handle params, py::handle grads, py::handle exp_avgs, py::handle exp_avg_sqs,
         py::handle steps, py::handle lr, py::handle beta1, py::handle beta2, py::handle eps,
         py::handle weight_decay) {
        adam_like_update_multi("adam_update_multi", false, params, grads, exp_avgs, exp_avg_sqs,
                               steps, lr, beta1, beta2, eps, weight_decay);
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
      py::kw_only(), py::arg("steps"), py::arg("lr") = 1e-3, py::arg("beta1") = 0.9,
      py::arg("beta2") = 0.999, py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0,
      ("Apply one torch.optim.Adam step to many parameters in place, all or nothing." +
       multi_doc + "    weight_decay: L2 penalty >= 0 added to the gradient. Default 0.0.\n" +
       multi_raises)
          .c_str());
  m.def(
      "adamw_update_multi",
      [](py::handle params, py::handle grads, py::handle exp_avgs, py::handle exp_avg_sqs,
         py::handle steps, py::handle lr, py::handle beta1, py::handle beta2, py::handle eps,
         py::handle weight_decay) {
        adam_like_update_multi("adamw_update_multi", true, params, grads, exp_avgs, exp_avg_sqs,
                               steps, lr, beta1, beta2, eps, weight_decay);
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
      py::kw_only(), py::arg("steps"), py::arg("lr") = 1e-3, py::arg("beta1") = 0.9,
      py::arg("beta2") = 0.999, py::arg("eps") = 1e-8, py::arg("weight_decay") = 1e-2,
      ("Apply one torch.optim.AdamW step to many parameters in place, all or nothing." +
       multi_doc + "    weight_decay: decoupled decay >= 0. Default 1e-2.\n" + multi_raises)
          .c_str());
  py::class_<PreparedUpdate>(m, "_PreparedUpdate")
      .def("__call__", &PreparedUpdate::operator(),
           "Run the prepared update again; False (nothing run) when an array changed in place.");
  m.def(
      "_prepare_sgd_update",
      [](py::handle params, py::handle grads, py::handle momentum_buffers, py::handle lr,
         py::handle momentum, py::handle dampening, py::handle nesterov,
         py::handle weight_decay) {
        MultiUpdate u = prepare_sgd(params, grads, momentum_buffers, lr, momentum, dampening,
                                    nesterov, weight_decay, py::bool_(false), nullptr);
        const std::vector<py::handle> gs = items_of(grads, u.op, "grads");
        return prepared_or_none(std::move(u), gs, false, {});
      },
      py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::kw_only(),
      py::arg("lr"), py::arg("momentum"), py::arg("dampening"), py::arg("nesterov"),
      py::arg("weight_decay"),
      "sgd_update_multi(..., first_step=False) checked once, as a _PreparedUpdate (or None when a "
      "gradient is strided).");
  m.def(
      "_prepare_adam_update",
      [](py::handle params, py::handle grads, py::handle exp_avgs, py::handle exp_avg_sqs,
         py::handle states, bool decoupled, py::handle lr, py::handle beta1, py::handle beta2,
         py::handle eps, py::handle weight_decay) {
        const char* op = decoupled ? "adamw_update_multi" : "adam_update_multi";
        MultiUpdate u = prepare_adam(op, decoupled, params, grads, exp_avgs, exp_avg_sqs,
                                     py::none(), lr, beta1, beta2, eps, weight_decay, nullptr,
                                     nullptr);
        std::vector<py::dict> dicts;
        for (py::handle h : items_of(states, op, "states")) {
          if (!py::isinstance<py::dict>(h)) {
            throw py::type_error(std::string(op) + ": states must be a list of dicts");
          }
          dicts.push_back(py::reinterpret_borrow<py::dict>(h));
        }
        if (dicts.size() != u.items.size()) {
          throw py::value_error(std::string(op) + ": states must have one dict per parameter");
        }
        const std::vector<py::handle> gs = items_of(grads, op, "grads");
        return prepared_or_none(std::move(u), gs, true, std::move(dicts));
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
      py::arg("states"), py::kw_only(), py::arg("decoupled"), py::arg("lr"), py::arg("beta1"),
      py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
      "adam(w)_update_multi checked once, as a _PreparedUpdate that reads and advances each "
      "state dict's \"step\" (or None when a gradient is strided).");
}

}  // namespace pydl::bind
