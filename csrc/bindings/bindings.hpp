// Shared by the binding files: one registration function per kernel family (module.cpp calls them
// all) and the two helpers every entry uses between validation (checks.hpp) and the kernels.
#pragma once

#include <pybind11/pybind11.h>

#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "bindings/checks.hpp"

namespace pydl::bind {

void bind_gemm(pybind11::module_& m);
void bind_activations(pybind11::module_& m);
void bind_dropout(pybind11::module_& m);
void bind_penalties(pybind11::module_& m);
void bind_losses(pybind11::module_& m);
void bind_optimizers(pybind11::module_& m);
void bind_conv(pybind11::module_& m);
void bind_pool(pybind11::module_& m);
void bind_norm(pybind11::module_& m);
void bind_embedding(pybind11::module_& m);
void bind_program(pybind11::module_& m);

// The one dtype switch: f(T{}) with T = float for kF32 and double for kF64.
template <typename F>
decltype(auto) by_dtype(DType dt, F&& f) {
  if (dt == DType::kF32) return f(float{});
  return f(double{});
}

// ---- deferred kernel calls (the engine's native replay) ----------------------------------------
//
// While a Capture is open on a thread, every kernel call made through nogil() is also stored as a
// closure over its (by-value) arguments, so the engine can later run a whole recorded forward as
// one C++ loop (Program, bind_program.cpp) with no Python between the kernels. Two modes:
//  - kRun: the call runs now too (the engine's eager recording run); arrays the entry allocates
//    (output(None)) are kept alive by the capture, since the closure writes into them;
//  - kDefer: nothing runs (capturing an op rewritten on the tape); an entry that would allocate
//    its output fails the capture.
// A capture fails (the engine then replays that op from Python) when an entry reads a temporary
// copy of an input (its contents would be frozen at capture time) or returns a value from the
// kernel. Entries whose work is not all inside nogil() must not be captured: ops opt in
// (``Op.native`` in pydl/tensor.py) after their binding was checked.
struct Capture {
  enum Mode { kRun, kDefer };
  Mode mode = kRun;
  bool failed = false;
  std::vector<std::function<void()>> steps;
  std::vector<pybind11::object> keep;  // arrays the steps write into or read from
};

// The capture open on this thread, or nullptr.
Capture*& active_capture();

// Marks the open capture (if any) as failed: the current entry uses a temporary copy.
inline void capture_fail() {
  if (Capture* c = active_capture()) c->failed = true;
}

// fn(args...) with the GIL released. The arguments (pointers into arrays, sizes, structs) are
// evaluated before the release, while Python objects may still be touched, and are passed by
// value: a capture may store them and call fn again later.
template <typename Fn, typename... A>
decltype(auto) nogil(Fn&& fn, A&&... args) {
  using R = std::invoke_result_t<Fn&, std::decay_t<A>&...>;
  if (Capture* c = active_capture()) {
    if constexpr (std::is_void_v<R>) {
      c->steps.emplace_back([f = std::decay_t<Fn>(fn),
                             t = std::make_tuple(std::decay_t<A>(args)...)]() mutable {
        std::apply(f, t);
      });
      if (c->mode == Capture::kRun) {
        pybind11::gil_scoped_release release;
        c->steps.back()();
      }
      return;
    } else {
      c->failed = true;  // a result the replay could not hand back
    }
  }
  pybind11::gil_scoped_release release;
  return fn(std::forward<A>(args)...);
}

}  // namespace pydl::bind
