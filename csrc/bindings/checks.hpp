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

#include <cstdint>
#include <string>
#include <vector>

namespace pydl::bind {

namespace py = pybind11;

enum class DType { kF32, kF64 };

using Shape = std::vector<int64_t>;

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

// ValueError unless lo <= v <= hi (NaN always fails); `what` is the parameter name.
void require_range(double v, double lo, double hi, const char* op, const char* what);

// The index of `obj` in `choices` (a str option such as approximate="tanh"): TypeError if obj is
// not a str, ValueError naming every choice if it is not one of them.
int require_choice(py::handle obj, const std::vector<const char*>& choices, const char* op,
                   const char* arg);

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
