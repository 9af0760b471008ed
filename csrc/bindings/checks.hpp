// The one place where public kernel inputs are validated (STYLE.md rule 3).
//
// Every binding turns Python objects into raw pointers through these helpers, so all kernels give
// the same errors: a non-array or wrong dtype is a TypeError, a wrong ndim/shape/out buffer is a
// ValueError naming the operation, the expected and the actual. Inputs are never converted
// between dtypes (a silent float64 -> float32 copy would hide a bug); non-contiguous inputs are
// copied to contiguous memory only where a kernel needs it, and outputs are never copied.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/act.hpp"

namespace pydl::bind {

namespace py = pybind11;

enum class DType { kF32, kF64 };

using Shape = std::vector<int64_t>;

// A py::array holding nothing yet (a null handle), for a variable or member assigned later.
// pybind11's `py::array x;` allocates an empty float64 numpy array (~0.4 us), which per-call
// entries paid once per such variable, e.g. twice per item of an optimizer's *_multi update.
inline py::array no_array() { return py::reinterpret_steal<py::array>(py::handle()); }

const char* dtype_name(DType dt);
Shape shape_of(const py::array& a);
std::string shape_str(const Shape& s);
std::string shape_str(const py::array& a);

// The object as an ndarray (no copy); TypeError if it is not one.
py::array require_array(py::handle obj, const char* op, const char* arg);
// float32 or float64, else TypeError.
DType float_dtype(const py::array& a, const char* op, const char* arg);
// Exactly `dt`, else TypeError naming both dtypes.
void require_dtype(const py::array& a, DType dt, const char* op, const char* arg);
void require_ndim(const py::array& a, int ndim, const char* op, const char* arg);
void require_same_shape(const py::array& a, const py::array& b, const char* op, const char* arg_a,
                        const char* arg_b);

// Number of elements of `shape`, or ValueError if it (or its size in bytes) overflows.
int64_t checked_numel(const Shape& shape, int64_t itemsize, const char* op);

// NPY_ARRAY_ALIGNED: every element's address is a multiple of its alignment.
constexpr int kAligned = py::detail::npy_api::NPY_ARRAY_ALIGNED_;

// C-contiguous, aligned version of an input (the same array when it already is).
py::array contiguous(const py::array& a);
// A C-contiguous, aligned copy of `a` (or `a` itself if it already is one); MemoryError (a Python
// exception, never a null array) when the copy cannot be allocated.
py::array aligned_contiguous_copy(const py::array& a);

// The output array: a new C-contiguous array when `out` is None; otherwise `out` itself, which must
// be an ndarray of exactly dtype `dt` (TypeError), shape `shape`, writeable and C-contiguous
// (ValueError). `out` never gets replaced by a copy, so in-place updates are never lost.
py::array output(py::handle out, const Shape& shape, DType dt, const char* op,
                 const char* arg = "out");

// ValueError unless `a` has shape `shape` and is writeable, C-contiguous and aligned: the rules
// every array a kernel writes into must meet (dtype is checked separately by the caller).
void require_writable_buffer(const py::array& a, const Shape& shape, const char* op,
                             const char* arg);

// An existing array updated in place (optimizer state, gradient buffers): same rules as `output`.
py::array inout(py::handle obj, const Shape& shape, DType dt, const char* op, const char* arg);

// True if the memory spans of a and b intersect.
bool overlaps(const py::array& a, const py::array& b);
// ValueError if `out` overlaps `in` (for kernels that cannot run in place).
void require_no_overlap(const py::array& out, const py::array& in, const char* op,
                        const char* out_arg, const char* in_arg);

// Named arrays: (array or None, argument name).
using NamedArrays = std::initializer_list<std::pair<py::handle, const char*>>;
// One gradient a backward binding may return: wanted or not, the caller's out array (or None)
// and its shape.
struct GradOut {
  bool need;
  py::handle out;
  Shape shape;
};
// The (dx, dw, db) of a backward binding: None where not wanted, else the given dx_out / dw_out /
// db_out (checked as `output` checks out) or a new array; ValueError if one overlaps `ins` or
// another of them.
std::array<py::object, 3> gradient_outputs(const GradOut (&grads)[3], DType dt, const char* op,
                                           NamedArrays ins);

// ValueError unless lo <= v <= hi (NaN always fails); `what` is the parameter name.
void require_range(double v, double lo, double hi, const char* op, const char* what);

// The one dtype switch, by_dtype(dt, f), is in bindings/bindings.hpp.

// The float or double half of a kernel table (tables have members f32 and f64).
template <typename T, typename Table>
const auto& of_dtype(const Table& t) {
  if constexpr (std::is_same_v<T, float>) {
    return t.f32;
  } else {
    return t.f64;
  }
}

// An int (repeated n times) or a sequence of n ints, each >= min: the kernel_size / stride /
// padding / dilation arguments of convolution and pooling. TypeError for a non-int (bool
// included), ValueError for a wrong length or a value below min.
Shape int_tuple(py::handle obj, size_t n, int64_t min, const char* op, const char* arg);

// Output length of a sliding window: (in + 2 * pad - dil * (k - 1) - 1) / stride + 1; ValueError
// naming the sizes when it is not positive (the window is larger than the padded input).
int64_t window_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil,
                        const char* op, const char* axis);

// The sliding window of convolution and pooling over 1 or 2 spatial axes, each field as
// (height, width). With one spatial axis the height fields describe a 1-row window.
struct Window {
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, oh = 1, ow = 1;
};

// in, kernel, stride, pad, dilation: one value each per spatial axis (1 or 2; values already
// validated by int_tuple). The output sizes come from window_out_size (ValueError naming the axis:
// "length", "height" or "width"), or are the input sizes when `same` (padding="same").
Window window_geometry(const Shape& in, const Shape& kernel, const Shape& stride, const Shape& pad,
                       const Shape& dilation, bool same, const char* op);

// Copies a window's kernel, stride, padding and output sizes into a kernel's shape struct
// (ConvShape, PoolShape: the fields are named alike).
template <typename S>
void set_window(S& s, const Window& w) {
  s.kh = w.kh;
  s.kw = w.kw;
  s.sh = w.sh;
  s.sw = w.sw;
  s.ph = w.ph;
  s.pw = w.pw;
  s.oh = w.oh;
  s.ow = w.ow;
}

// Integer indices (int32 or int64 array of any shape, else TypeError) as int64, each checked to
// lie in [0, bound) (ValueError naming the first offending position and value).
std::vector<int64_t> checked_indices(const py::array& a, int64_t bound, const char* op,
                                     const char* arg);
// The same check in place for a C-contiguous int64 array: its data, or nullptr (nothing checked)
// for any other dtype or layout (then use checked_indices).
const int64_t* int64_indices(const py::array& a, int64_t bound, const char* op, const char* arg);

// An optional 1-D input: None stays None; otherwise an array of dtype dt and shape (n,)
// (TypeError / ValueError naming `arg`), made contiguous.
py::object optional_vector(py::handle obj, int64_t n, DType dt, const char* op, const char* arg);

// Data pointer of an array held in a py::object, or nullptr for None (optional inputs/outputs).
template <typename T>
const T* cptr_opt(const py::object& o) {
  return o.is_none() ? nullptr : static_cast<const T*>(py::reinterpret_borrow<py::array>(o).data());
}
template <typename T>
T* ptr_opt(const py::object& o) {
  return o.is_none() ? nullptr
                     : static_cast<T*>(py::reinterpret_borrow<py::array>(o).mutable_data());
}

// The index of `obj` in `choices` (a str option such as approximate="tanh"): TypeError if obj is
// not a str, ValueError naming every choice if it is not one of them.
int require_choice(py::handle obj, const std::vector<const char*>& choices, const char* op,
                   const char* arg);

// A scalar hyper-parameter as the caller passed it (see the type_caster below): pybind11's own
// float conversion would fail with an anonymous "incompatible function arguments" TypeError.
struct RealArg {
  py::handle obj;
};
// The value of a real-number argument (int, float, numpy scalar: whatever float() takes), else
// TypeError "<op>: <arg> must be a real number, got <type>" (pydl/_validation.py says the same).
double real_arg(RealArg v, const char* op, const char* arg);
// lo <= real_arg(v) <= hi, else ValueError (require_range).
double real_in(RealArg v, double lo, double hi, const char* op, const char* arg);

// ValueError unless v is finite and >= 0; `why` (may be empty) is appended to the message.
void require_nonneg_finite(double v, const char* op, const char* what, const std::string& why);

// The same float dtype as `dt`, else TypeError naming both arrays and both dtypes.
void require_same_dtype(const py::array& b, DType da, const char* op, const char* name_a,
                        const char* name_b);
// ValueError if `out` shares memory with `in` without being exactly the same elements (both
// C-contiguous with one shape and dtype, so equal data pointers mean the same elements).
void require_same_or_disjoint(const py::array& out, const py::array& in, const char* op,
                              const char* out_arg, const char* in_arg);

// An axis of x as a non-negative index, or ValueError (0-d arrays have no axis).
int normalize_axis(const py::array& x, int64_t axis, const char* op);
// reduction="mean" (true) or "sum" (false): TypeError if not a str, ValueError otherwise.
bool parse_reduction(py::handle reduction, const char* op);
// Labels (int32 or int64, TypeError otherwise) as int64, each checked to lie in [0, classes).
std::vector<int64_t> checked_labels(const py::array& labels, int64_t classes, const char* op);

// The GEMM epilogue activation named by `act` (None or a str), for linear().
Act parse_linear_activation(py::handle act, const char* op = "linear");

// Dropout arguments. p in [0, 1) (ValueError "p (the drop probability) ..."), else TypeError.
double drop_probability(RealArg p, const char* op);
// The object as a Python int: anything with __index__ (numpy integers too) except bool.
py::int_ int_arg(py::handle obj, const char* op, const char* what);
// An int in [0, 2**bits) (bits is 32 or 64): TypeError / ValueError naming it.
uint64_t uint_arg(py::handle obj, int bits, const char* op, const char* what);
// An int or a sequence of ints -> a shape with sizes >= 0.
Shape shape_arg(py::handle obj, const char* op);
// A sequence of exactly `len` ints, each in [0, 2^32).
void u32_words(py::handle obj, uint32_t* words, size_t len, const char* op, const char* what);
// A uint8 mask input of the given shape (C-contiguous copy if needed).
py::array mask_input(py::handle obj, const Shape& shape, const char* op);
// The uint8 mask output: a new array, or `out` itself (uint8, that shape, writeable, C-contig.).
py::array mask_output(py::handle out, const Shape& shape, const char* op, const char* arg);

template <typename T>
T* ptr(py::array& a) {
  return static_cast<T*>(a.mutable_data());
}
template <typename T>
const T* cptr(const py::array& a) {
  return static_cast<const T*>(a.data());
}

// Element strides of a (byte strides must be multiples of the item size; ValueError otherwise).
Shape element_strides(const py::array& a, const char* op, const char* arg);

}  // namespace pydl::bind

namespace pybind11::detail {
// Accepts any object for a RealArg parameter (checks.* validates it) and shows it as `float` in
// signatures and docstrings.
template <>
struct type_caster<pydl::bind::RealArg> {
  PYBIND11_TYPE_CASTER(pydl::bind::RealArg, const_name("float"));
  bool load(handle src, bool) {
    value.obj = src;
    return true;
  }
};
}  // namespace pybind11::detail
