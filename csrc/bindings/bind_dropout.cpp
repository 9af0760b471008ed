// Python bindings of the dropout kernels (see dropout/dropout.hpp for the generator and the rule
// that turns p into a drop threshold).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "dropout/dropout_impl.hpp"

namespace pydl::bind {
namespace {

DropoutStream stream_args(double p, py::handle seed, py::handle step, const char* op) {
  DropoutStream s;
  s.threshold = dropout::threshold(p);
  s.seed = uint_arg(seed, 64, op, "seed");
  s.step = uint_arg(step, 64, op, "step");
  return s;
}

// The arrays of a dropout forward, checked: x (made contiguous), out and mask_out (allocated when
// None), out either x itself or disjoint from it, the mask disjoint from both.
struct DropoutArrays {
  py::array x = no_array(), y = no_array(), mask = no_array();
  DType dt;
};

DropoutArrays dropout_arrays(py::handle x_obj, py::handle out, py::handle mask_out,
                             const char* op) {
  DropoutArrays a;
  a.x = require_array(x_obj, op, "x");
  a.dt = float_dtype(a.x, op, "x");
  a.x = contiguous(a.x);
  const Shape shape = shape_of(a.x);
  a.y = output(out, shape, a.dt, op, "out");
  a.mask = mask_output(mask_out, shape, op, "mask_out");
  require_same_or_disjoint(a.y, a.x, op, "out", "x");
  require_no_overlap(a.mask, a.x, op, "mask_out", "x");
  require_no_overlap(a.mask, a.y, op, "mask_out", "out");
  return a;
}

py::tuple dropout_fwd(py::handle x_obj, RealArg p_obj, py::handle seed, py::handle step,
                      py::handle out, py::handle mask_out) {
  const char* op = "dropout";
  DropoutArrays a = dropout_arrays(x_obj, out, mask_out, op);
  const double p = drop_probability(p_obj, op);
  const DropoutStream s = stream_args(p, seed, step, op);
  by_dtype(a.dt, [&](auto t) {
    using T = decltype(t);
    nogil(dropout::forward<T>, ptr<T>(a.y), ptr<uint8_t>(a.mask), cptr<T>(a.x), s, p,
          a.x.size());
  });
  return py::make_tuple(a.y, a.mask);
}

// dropout_fwd with (seed, step) read from key, a (2,) uint64 array, when the kernel runs instead
// of when it is called: the engine captures the call once and refills key before every replay
// (pydl/functional.py, DropoutOp), so a replayed step draws its masks as eagerly.
py::tuple dropout_keyed(py::handle x_obj, RealArg p_obj, py::handle key_obj, py::handle out,
                        py::handle mask_out) {
  const char* op = "_dropout_keyed";
  DropoutArrays a = dropout_arrays(x_obj, out, mask_out, op);
  const double p = drop_probability(p_obj, op);
  const py::array key = require_array(key_obj, op, "key");
  if (!key.dtype().is(py::dtype::of<uint64_t>()) || key.ndim() != 1 || key.shape(0) != 2 ||
      !(key.flags() & py::array::c_style)) {
    throw py::type_error(std::string(op) + ": key must be a contiguous uint64 array of shape (2,) "
                         "holding (seed, step)");
  }
  DropoutStream s;
  s.threshold = dropout::threshold(p);
  const auto* k = static_cast<const uint64_t*>(key.data());
  by_dtype(a.dt, [&](auto t) {
    using T = decltype(t);
    nogil(
        [](T* yp, uint8_t* mp, const T* xp, const uint64_t* kp, DropoutStream st, double pp,
           int64_t n) {
          st.seed = kp[0];
          st.step = kp[1];
          dropout::forward<T>(yp, mp, xp, st, pp, n);
        },
        ptr<T>(a.y), ptr<uint8_t>(a.mask), cptr<T>(a.x), k, s, p, int64_t(a.x.size()));
  });
  return py::make_tuple(a.y, a.mask);
}

py::array dropout_bwd(py::handle dy_obj, py::handle mask_obj, RealArg p_obj, py::handle out) {
  const char* op = "dropout_backward";
  py::array dy = require_array(dy_obj, op, "dy");
  const DType dt = float_dtype(dy, op, "dy");
  const Shape shape = shape_of(dy);
  py::array mask = mask_input(mask_obj, shape, op);
  const double p = drop_probability(p_obj, op);
  dy = contiguous(dy);
  py::array dx = output(out, shape, dt, op, "out");
  require_same_or_disjoint(dx, dy, op, "out", "dy");
  require_no_overlap(dx, mask, op, "out", "mask");
  by_dtype(dt, [&](auto t) {
    using T = decltype(t);
    nogil(dropout::backward<T>, ptr<T>(dx), cptr<T>(dy), cptr<uint8_t>(mask), p, dy.size());
  });
  return dx;
}

py::array dropout_mask(py::handle shape_obj, RealArg p, py::handle seed, py::handle step) {
  const char* op = "dropout_mask";
  const Shape shape = shape_arg(shape_obj, op);
  const DropoutStream s = stream_args(drop_probability(p, op), seed, step, op);
  py::array mask = mask_output(py::none(), shape, op, "mask");
  nogil(dropout::keep_mask, ptr<uint8_t>(mask), s, mask.size());
  return mask;
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
  m.def("_dropout_keyed", &dropout_keyed, py::arg("x"), py::arg("p"), py::arg("key"),
        py::kw_only(), py::arg("out") = py::none(), py::arg("mask_out") = py::none(),
        "dropout(x, p, key[0], key[1], out=, mask_out=) with the key read when the kernel runs "
        "(private: the engine's captured dropout).");
  m.def("dropout", &dropout_fwd, py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("step") = 0,
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
    TypeError: x is not a float32/float64 ndarray, p is not a real number, seed or step is not
        an int, or out/mask_out has the wrong dtype.
    ValueError: p is not in [0, 1) or is NaN, seed or step is out of range, or out/mask_out has
        the wrong shape, is read-only, not C-contiguous or overlaps an input.

Example:
    >>> y, mask = dropout(np.ones(8, np.float32), 0.5, seed=1)
)doc");
  m.def("dropout_backward", &dropout_bwd, py::arg("dy"), py::arg("mask"), py::arg("p"),
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
    TypeError: dy is not a float32/float64 ndarray, mask is not a uint8 ndarray, p is not a real
        number, or out has the wrong dtype.
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
    TypeError: shape, seed or step is not an int (tuple), or p is not a real number.
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
