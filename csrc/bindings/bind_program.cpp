// Native replay of a recorded forward: the kernel calls of consecutive ops, captured once while
// the engine records a step (bindings.hpp: Capture, nogil), run later as one C++ loop with the
// GIL released once, so a replayed forward has no Python between its kernels.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "common/dispatch.hpp"

namespace pydl::bind {

namespace py = pybind11;

Capture*& active_capture() {
  thread_local Capture* capture = nullptr;
  return capture;
}

namespace {

thread_local std::unique_ptr<Capture> open_capture;

// The captured kernel calls of one or more ops, in order. The closures hold raw pointers into
// arrays the tape (and `keep`) keeps alive. They were bound to the kernels of the instruction set
// active at capture time; when tests switch it, `fallback` (the ops' Python forwards) runs instead.
class Program {
 public:
  Program(std::vector<std::function<void()>> steps, std::vector<py::object> keep, Isa isa)
      : steps_(std::move(steps)), keep_(std::move(keep)), isa_(isa) {}

  static std::shared_ptr<Program> join(const std::vector<std::shared_ptr<Program>>& parts,
                                       py::object fallback) {
    std::vector<std::function<void()>> steps;
    std::vector<py::object> keep;
    Isa isa = active_isa();
    for (const auto& p : parts) {
      if (!p) throw py::type_error("_Program.join: got None instead of a program");
      if (p->isa_ != parts.front()->isa_)
        throw py::value_error("_Program.join: programs captured under different instruction sets");
      isa = p->isa_;
      steps.insert(steps.end(), p->steps_.begin(), p->steps_.end());
      keep.insert(keep.end(), p->keep_.begin(), p->keep_.end());
    }
    auto r = std::make_shared<Program>(std::move(steps), std::move(keep), isa);
    r->fallback_ = std::move(fallback);
    return r;
  }

  void run() {
    // Once the instruction set changed, the ops' Python forwards run from then on (they rebind
    // the arrays their backward reads, so going back to the captured calls would be wrong).
    if (stale_ || isa_ != active_isa()) {
      stale_ = true;
      fallback_();
      return;
    }
    py::gil_scoped_release release;
    for (auto& s : steps_) s();
  }

  // The no_grad hit path of a forward that is this one program (pydl/engine.py
  // CompiledForward.replay): x copied into the recorded input buffer, the program run, and a new
  // array copied from the output buffer returned. None (nothing done) when x is not a
  // C-contiguous array of the input buffer's dtype and size; the caller then takes the general
  // path.
  py::object run_io(const py::array& x, const py::array& input, const py::array& output) {
    if (!(x.flags() & py::array::c_style) || !x.dtype().is(input.dtype()) ||
        x.nbytes() != input.nbytes() || !(input.flags() & py::array::c_style) ||
        !(output.flags() & py::array::c_style)) {
      return py::none();
    }
    std::memcpy(const_cast<void*>(input.data()), x.data(), static_cast<size_t>(x.nbytes()));
    run();
    std::vector<py::ssize_t> shape(output.shape(), output.shape() + output.ndim());
    py::array y(output.dtype(), shape);
    std::memcpy(y.mutable_data(), output.data(), static_cast<size_t>(output.nbytes()));
    return std::move(y);
  }

  size_t size() const { return steps_.size(); }

 private:
  std::vector<std::function<void()>> steps_;
  std::vector<py::object> keep_;
  Isa isa_;
  py::object fallback_;
  bool stale_ = false;
};

void capture_begin(bool defer) {
  if (active_capture() != nullptr)
    throw py::value_error("_capture_begin: a capture is already open on this thread");
  open_capture = std::make_unique<Capture>();
  open_capture->mode = defer ? Capture::kDefer : Capture::kRun;
  active_capture() = open_capture.get();
}

py::object capture_end() {
  active_capture() = nullptr;
  std::unique_ptr<Capture> c = std::move(open_capture);
  if (!c || c->failed) return py::none();
  return py::cast(std::make_shared<Program>(std::move(c->steps), std::move(c->keep), active_isa()));
}

template <typename T>
void add_arrays(T* out, const T* a, const T* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

// out = a + b element-wise (one IEEE addition each: the bits of numpy's a + b). The engine sums a
// tensor's gradients from several consumers into a buffer it keeps, so the sum can be captured.
// out may be a itself (a third gradient added in place), never a partial overlap.
void add_into(py::handle out_obj, py::handle a_obj, py::handle b_obj) {
  const char* op = "_add_into";
  py::array a = require_array(a_obj, op, "a");
  py::array b = require_array(b_obj, op, "b");
  const DType dt = float_dtype(a, op, "a");
  require_dtype(b, dt, op, "b");
  require_same_shape(a, b, op, "a", "b");
  py::array out = inout(out_obj, shape_of(a), dt, op, "out");
  if (out.data() != a.data()) require_no_overlap(out, a, op, "out", "a");
  require_no_overlap(out, b, op, "out", "b");
  a = contiguous(a);
  b = contiguous(b);
  by_dtype(dt, [&](auto zero) {
    using T = decltype(zero);
    nogil(add_arrays<T>, ptr<T>(out), cptr<T>(a), cptr<T>(b), int64_t(a.size()));
  });
}

}  // namespace

void bind_program(py::module_& m) {
  py::class_<Program, std::shared_ptr<Program>>(m, "_Program",
                                                "Captured kernel calls, run in order (private).")
      .def_static("join", &Program::join, py::arg("parts"), py::arg("fallback"),
                  "One program running the given ones in order; `fallback()` runs instead when "
                  "the active instruction set is not the captured one.")
      .def("__call__", &Program::run, "Run the captured kernel calls in order.")
      .def("run_io", &Program::run_io, py::arg("x"), py::arg("input"), py::arg("output"),
           "Copy x into input, run, return a copy of output; None if x does not fit as is.")
      .def("__len__", &Program::size);
  m.def("_capture_begin", &capture_begin, py::arg("defer"),
        "Start capturing this thread's kernel calls (defer: capture without running them).");
  m.def("_add_into", &add_into, py::arg("out"), py::arg("a"), py::arg("b"),
        "out = a + b element-wise, capturable (private: the engine's gradient sums).");
  m.def("_capture_end", &capture_end,
        "Stop capturing; return the captured calls as a _Program, or None if they cannot be "
        "replayed natively.");
}

}  // namespace pydl::bind
