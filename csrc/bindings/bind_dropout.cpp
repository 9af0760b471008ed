// Python bindings of the dropout kernels (see dropout/dropout.hpp for the generator and the rule
// that turns p into a drop threshold).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "common/dispatch.hpp"
#include "common/parallel.hpp"
#include "dropout/dropout_impl.hpp"

namespace pydl::bind {
namespace {

// Elements per thread below which splitting the work costs more than it saves.
constexpr int64_t kGrain = 16384;

std::string type_name(py::handle obj) {
  return std::string(py::str(py::type::handle_of(obj).attr("__name__")));
}

// The object as a Python int: anything with __index__ (numpy integers too) except bool.
py::int_ int_arg(py::handle obj, const char* op, const char* what) {
  // PyNumber_Index can still fail after PyIndex_Check: ndarray has __index__ but only 0-d integer
  // arrays convert; report that as this argument's TypeError, not numpy's anonymous one.
  PyObject* v = nullptr;
  if (!py::isinstance<py::bool_>(obj) && PyIndex_Check(obj.ptr())) {
    v = PyNumber_Index(obj.ptr());
    if (!v) PyErr_Clear();
  }
  if (!v) {
    throw py::type_error(std::string(op) + ": " + what + " must be an int, got " + type_name(obj));
  }
  return py::reinterpret_steal<py::int_>(v);
}

// An int in [0, 2**bits) (bits is 32 or 64): TypeError / ValueError naming it.
uint64_t uint_arg(py::handle obj, int bits, const char* op, const char* what) {
  py::int_ v = int_arg(obj, op, what);
  const uint64_t max = bits == 64 ? UINT64_MAX : (uint64_t{1} << bits) - 1;
  unsigned long long u = PyLong_AsUnsignedLongLong(v.ptr());
  if (PyErr_Occurred() || u > max) {
    PyErr_Clear();
    throw py::value_error(std::string(op) + ": " + what + " must be in [0, 2**" +
                          std::to_string(bits) + "), got " + std::string(py::str(v)));
  }
  return u;
}

// p in [0, 1) -> the DropoutStream threshold round(p * 2^32), capped at 2^32 - 1.
uint32_t drop_threshold(double p, const char* op) {
  if (!(p >= 0.0 && p < 1.0)) {
    std::ostringstream os;
    os << op << ": p (the drop probability) must be in [0, 1), got " << p;
    throw py::value_error(os.str());
  }
  // p * 2^32 is exact (a power-of-two scaling); llround rounds half away from zero.
  long long t = std::llround(std::ldexp(p, 32));
  return t > static_cast<long long>(UINT32_MAX) ? UINT32_MAX : static_cast<uint32_t>(t);
}

template <typename T>
T keep_scale(double p) {
  return static_cast<T>(1.0 / (1.0 - p));
}

bool is_uint8(const py::array& a) { return a.dtype().equal(py::dtype::of<uint8_t>()); }

// A mask argument: an ndarray of dtype uint8 and the given shape (C-contiguous copy if needed).
py::array mask_input(py::handle obj, const Shape& shape, const char* op) {
  py::array a = require_array(obj, op, "mask");
  if (!is_uint8(a)) {
    throw py::type_error(std::string(op) + ": mask must have dtype uint8, got " +
                         std::string(py::str(a.dtype())) +
                         "; pass the mask returned by dropout() or .astype(numpy.uint8)");
  }
  if (shape_of(a) != shape) {
    throw py::value_error(std::string(op) + ": mask must have the shape of dy " +
                          shape_str(shape) + ", got " + shape_str(a));
  }
  return contiguous(a);
}

// The mask output: a new uint8 array, or `out` itself (uint8, that shape, writeable, C-contiguous).
py::array mask_output(py::handle out, const Shape& shape, const char* op, const char* arg) {
  if (out.is_none()) {
    checked_numel(shape, 1, op);
    return py::array_t<uint8_t>(std::vector<py::ssize_t>(shape.begin(), shape.end()));
  }
  py::array a = require_array(out, op, arg);
  if (!is_uint8(a)) {
    throw py::type_error(std::string(op) + ": " + arg + " must have dtype uint8, got " +
                         std::string(py::str(a.dtype())));
  }
  require_writable_buffer(a, shape, op, arg);
  return a;
}

// An int or a sequence of ints -> a shape with sizes >= 0.
Shape shape_arg(py::handle obj, const char* op) {
  std::vector<py::int_> dims;
  if (PyIndex_Check(obj.ptr()) && !py::isinstance<py::bool_>(obj)) {
    dims.push_back(int_arg(obj, op, "shape"));
  } else if (py::isinstance<py::sequence>(obj) && !py::isinstance<py::str>(obj)) {
    for (py::handle d : py::reinterpret_borrow<py::sequence>(obj)) {
      dims.push_back(int_arg(d, op, "shape entry"));
    }
  } else {
    throw py::type_error(std::string(op) + ": shape must be an int or a tuple of ints, got " +
                         type_name(obj));
  }
  Shape s;
  for (const py::int_& d : dims) {
    long long v = PyLong_AsLongLong(d.ptr());
    if (PyErr_Occurred() || v < 0) {
      PyErr_Clear();
      throw py::value_error(std::string(op) + ": shape entries must be in [0, 2**63), got " +
                            std::string(py::str(d)));
    }
    s.push_back(v);
  }
  return s;
}

DropoutStream stream_args(double p, py::handle seed, py::handle step, const char* op) {
  DropoutStream s;
  s.threshold = drop_threshold(p, op);
  s.seed = uint_arg(seed, 64, op, "seed");
  s.step = uint_arg(step, 64, op, "step");
  return s;
}

template <typename T>
const DropoutFns<T>& dropout_fns() {
  if constexpr (std::is_same_v<T, float>) {
    return kernels().dropout.f32;
  } else {
    return kernels().dropout.f64;
  }
}

// y, mask: outputs of x's size; chunk starts are multiples of 64 as the kernels require.
template <typename T>
void forward(py::array& y, py::array& mask, const py::array& x, const DropoutStream& s, double p) {
  const auto fwd = dropout_fns<T>().forward;
  T* yp = ptr<T>(y);
  uint8_t* mp = static_cast<uint8_t*>(mask.mutable_data());
  const T* xp = cptr<T>(x);
  const T scale = keep_scale<T>(p);
  py::gil_scoped_release release;
  parallel_chunks(static_cast<int64_t>(x.size()), kGrain, [&](int64_t b, int64_t e) {
    fwd(yp + b, mp + b, xp + b, s, scale, b, e - b);
  });
}

template <typename T>
void backward(py::array& dx, const py::array& dy, const py::array& mask, double p) {
  const auto bwd = dropout_fns<T>().backward;
  T* dxp = ptr<T>(dx);
  const T* dyp = cptr<T>(dy);
  const uint8_t* mp = static_cast<const uint8_t*>(mask.data());
  const T scale = keep_scale<T>(p);
  py::gil_scoped_release release;
  parallel_chunks(static_cast<int64_t>(dy.size()), kGrain, [&](int64_t b, int64_t e) {
    bwd(dxp + b, dyp + b, mp + b, scale, e - b);
  });
}

// ValueError if `out` shares memory with `in` without being exactly the same elements (an
// element-wise kernel may write each element over its own input, nothing else; both arrays are
// C-contiguous with one shape and dtype here, so equal data pointers mean the same elements).
void require_same_or_disjoint(const py::array& out, const py::array& in, const char* op,
                              const char* out_arg, const char* in_arg) {
  if (out.data() != in.data()) require_no_overlap(out, in, op, out_arg, in_arg);
}

py::tuple dropout(py::handle x_obj, double p, py::handle seed, py::handle step, py::handle out,
                  py::handle mask_out) {
  const char* op = "dropout";
  py::array x = require_array(x_obj, op, "x");
  const DType dt = float_dtype(x, op, "x");
  const DropoutStream s = stream_args(p, seed, step, op);
  x = contiguous(x);
  const Shape shape = shape_of(x);
  py::array y = output(out, shape, dt, op, "out");
  py::array mask = mask_output(mask_out, shape, op, "mask_out");
  require_same_or_disjoint(y, x, op, "out", "x");
  require_no_overlap(mask, x, op, "mask_out", "x");
  require_no_overlap(mask, y, op, "mask_out", "out");
  if (dt == DType::kF32) {
    forward<float>(y, mask, x, s, p);
  } else {
    forward<double>(y, mask, x, s, p);
  }
  return py::make_tuple(y, mask);
}

py::array dropout_backward(py::handle dy_obj, py::handle mask_obj, double p, py::handle out) {
  const char* op = "dropout_backward";
  py::array dy = require_array(dy_obj, op, "dy");
  const DType dt = float_dtype(dy, op, "dy");
  const Shape shape = shape_of(dy);
  py::array mask = mask_input(mask_obj, shape, op);
  drop_threshold(p, op);  // validates p
  dy = contiguous(dy);
  py::array dx = output(out, shape, dt, op, "out");
  require_same_or_disjoint(dx, dy, op, "out", "dy");
  require_no_overlap(dx, mask, op, "out", "mask");
  if (dt == DType::kF32) {
    backward<float>(dx, dy, mask, p);
  } else {
    backward<double>(dx, dy, mask, p);
  }
  return dx;
}

py::array dropout_mask(py::handle shape_obj, double p, py::handle seed, py::handle step) {
  const char* op = "dropout_mask";
  const Shape shape = shape_arg(shape_obj, op);
  const DropoutStream s = stream_args(p, seed, step, op);
  py::array mask = mask_output(py::none(), shape, op, "mask");
  const auto gen = kernels().dropout.mask;
  uint8_t* mp = static_cast<uint8_t*>(mask.mutable_data());
  const int64_t n = static_cast<int64_t>(mask.size());
  {
    py::gil_scoped_release release;
    parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) { gen(mp + b, s, b, e - b); });
  }
  return mask;
}

// A sequence of exactly `len` ints, each in [0, 2^32).
void u32_words(py::handle obj, uint32_t* words, size_t len, const char* op, const char* what) {
  // PySequence_Size fails for sequences without a length, e.g. a 0-d ndarray.
  const Py_ssize_t size = py::isinstance<py::sequence>(obj) && !py::isinstance<py::str>(obj)
                              ? PySequence_Size(obj.ptr())
                              : -1;
  if (size < 0) {
    PyErr_Clear();
    throw py::type_error(std::string(op) + ": " + what + " must be a sequence of " +
                         std::to_string(len) + " ints, got " + type_name(obj));
  }
  py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
  if (static_cast<size_t>(size) != len) {
    throw py::value_error(std::string(op) + ": " + what + " must have " + std::to_string(len) +
                          " words, got " + std::to_string(size));
  }
  for (size_t i = 0; i < len; ++i) {
    words[i] = static_cast<uint32_t>(uint_arg(seq[i], 32, op, what));
  }
}

py::tuple philox(py::handle counter, py::handle key) {
  const char* op = "philox4x32_10";
  uint32_t ctr[4], k[2], out[4];
  u32_words(counter, ctr, 4, op, "counter");
  u32_words(key, k, 2, op, "key");
  generic::philox4x32_10(out, ctr, k);
  return py::make_tuple(out[0], out[1], out[2], out[3]);
}

}  // namespace

void bind_dropout(py::module_& m) {
  m.def("dropout", &dropout, py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("step") = 0,
        py::kw_only(), py::arg("out") = py::none(), py::arg("mask_out") = py::none(),
        R"doc(Drop elements of x with probability p and scale the kept ones by 1 / (1 - p).

The keep/drop decision for flat (C-order) element i depends only on (seed, step, i): it comes
from the counter-based generator Philox4x32-10 with key = (seed low, seed high 32 bits) and
counter = (i // 4 as 64 bits, step as 64 bits), element i using output word i % 4 (u). Element i
is dropped iff u < round(p * 2**32) (capped at 2**32 - 1), so the mask is the same for any
thread count and instruction set, and p = 0 keeps everything. One pass computes
y = x * mask * scale with scale = 1 / (1 - p) rounded to x's dtype; NaN stays NaN where kept
(and a non-finite x gives NaN where dropped, as x * mask * scale does in numpy).

Args:
    x: float32 or float64 array of any shape (strided views are fine).
    p: Probability of dropping an element, in [0, 1).
    seed: Int in [0, 2**64) selecting the random stream.
    step: Int in [0, 2**64); use a new step (e.g. the training step) for a new mask. Default 0.
    out: Optional output array for y (x's shape and dtype, writeable, C-contiguous); may be x.
    mask_out: Optional uint8 output array for the mask (x's shape, writeable, C-contiguous).

Returns:
    (y, mask): y like x, and the uint8 mask of x's shape (1 = kept, 0 = dropped).

Raises:
    TypeError: x is not a float32/float64 ndarray, seed or step is not an int, or out/mask_out
        has the wrong dtype.
    ValueError: p is not in [0, 1) or is NaN, seed or step is out of range, or out/mask_out has
        the wrong shape, is read-only, not C-contiguous or overlaps an input.

Example:
    >>> y, mask = dropout(np.ones(8, np.float32), 0.5, seed=1)
)doc");
  m.def("dropout_backward", &dropout_backward, py::arg("dy"), py::arg("mask"), py::arg("p"),
        py::kw_only(), py::arg("out") = py::none(),
        R"doc(Return the gradient of dropout: dx = dy * mask * (1 / (1 - p)).

Args:
    dy: float32 or float64 gradient of dropout's output (any shape, strided views are fine).
    mask: uint8 array of dy's shape, as returned by dropout(); nonzero = kept.
    p: The drop probability used in the forward pass, in [0, 1).
    out: Optional output array for dx (dy's shape and dtype, writeable, C-contiguous); may be dy.

Returns:
    dx, an array like dy.

Raises:
    TypeError: dy is not a float32/float64 ndarray, mask is not a uint8 ndarray, or out has the
        wrong dtype.
    ValueError: mask's shape differs from dy's, p is not in [0, 1) or is NaN, or out has the
        wrong shape, is read-only, not C-contiguous or overlaps an input.
)doc");
  m.def("dropout_mask", &dropout_mask, py::arg("shape"), py::arg("p"), py::arg("seed"),
        py::arg("step") = 0,
        R"doc(Return the uint8 keep mask dropout(x, p, seed, step) uses for an x of this shape.

Args:
    shape: Int or tuple of ints.
    p: Probability of dropping an element, in [0, 1).
    seed: Int in [0, 2**64).
    step: Int in [0, 2**64). Default 0.

Returns:
    uint8 array of the given shape, 1 = kept, 0 = dropped.

Raises:
    TypeError: shape, seed or step is not an int (tuple).
    ValueError: p is not in [0, 1) or is NaN, seed or step is out of range, or the shape has a
        negative or too large size.
)doc");
  m.def("philox4x32_10", &philox, py::arg("counter"), py::arg("key"),
        R"doc(Return one block of the Philox4x32-10 generator (for known-answer tests).

Args:
    counter: Four ints in [0, 2**32).
    key: Two ints in [0, 2**32).

Returns:
    Tuple of four ints in [0, 2**32).

Raises:
    TypeError: counter or key is not a sequence of ints.
    ValueError: wrong number of words, or a word outside [0, 2**32).

Example:
    >>> philox4x32_10((0, 0, 0, 0), (0, 0))[0] == 0x6627E8D5
    True
)doc");
}

}  // namespace pydl::bind
