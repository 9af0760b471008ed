#include "bindings/checks.hpp"

#include <cmath>
#include <limits>
#include <sstream>

namespace pydl::bind {

const char* dtype_name(DType dt) { return dt == DType::kF32 ? "float32" : "float64"; }

Shape shape_of(const py::array& a) {
  Shape s(static_cast<size_t>(a.ndim()));
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s[i] = a.shape(i);
  return s;
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '(';
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) os << ", ";
    os << s[i];
  }
  if (s.size() == 1) os << ',';
  os << ')';
  return os.str();
}

std::string shape_str(const py::array& a) { return shape_str(shape_of(a)); }

py::array require_array(py::handle obj, const char* op, const char* arg) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(std::string(op) + ": " + arg + " must be a numpy.ndarray, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))) +
                         "; convert it with numpy.asarray(..., dtype=numpy.float32)");
  }
  return py::reinterpret_borrow<py::array>(obj);
}

DType float_dtype(const py::array& a, const char* op, const char* arg) {
  // equal() also compares byte order: a big-endian float32 array is not accepted as float32.
  py::dtype dt = a.dtype();
  if (dt.equal(py::dtype::of<float>())) return DType::kF32;
  if (dt.equal(py::dtype::of<double>())) return DType::kF64;
  throw py::type_error(std::string(op) + ": " + arg + " must have dtype float32 or float64, got " +
                       std::string(py::str(dt)) + "; cast it with .astype(numpy.float32)");
}

void require_dtype(const py::array& a, DType dt, const char* op, const char* arg) {
  DType got = float_dtype(a, op, arg);
  if (got != dt) {
    throw py::type_error(std::string(op) + ": " + arg + " has dtype " + dtype_name(got) +
                         " but the other operands are " + dtype_name(dt) +
                         "; pass all arrays in one dtype");
  }
}

void require_ndim(const py::array& a, int ndim, const char* op, const char* arg) {
  if (a.ndim() != ndim) {
    throw py::value_error(std::string(op) + ": " + arg + " must be " + std::to_string(ndim) +
                          "-D, got shape " + shape_str(a));
  }
}

void require_same_shape(const py::array& a, const py::array& b, const char* op, const char* arg_a,
                        const char* arg_b) {
  if (shape_of(a) != shape_of(b)) {
    throw py::value_error(std::string(op) + ": " + arg_a + " and " + arg_b +
                          " must have the same shape, got " + shape_str(a) + " and " +
                          shape_str(b));
  }
}

int64_t checked_numel(const Shape& shape, int64_t itemsize, const char* op) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) {
      throw py::value_error(std::string(op) + ": result shape " + shape_str(shape) +
                            " has more elements than can be addressed");
    }
  }
  int64_t bytes;
  if (__builtin_mul_overflow(n, itemsize, &bytes)) {
    throw py::value_error(std::string(op) + ": result shape " + shape_str(shape) +
                          " needs more bytes than can be addressed");
  }
  return n;
}

py::array aligned_contiguous_copy(const py::array& a) {
  // Not py::array::ensure: when the copy cannot be allocated it returns a null array and clears
  // numpy's MemoryError, and the caller would then dereference null.
  PyObject* r = py::detail::npy_api::get().PyArray_FromAny_(
      a.ptr(), nullptr, 0, 0,
      py::detail::npy_api::NPY_ARRAY_ENSUREARRAY_ | py::array::c_style | kAligned, nullptr);
  if (!r) throw py::error_already_set();
  return py::reinterpret_steal<py::array>(r);
}

py::array contiguous(const py::array& a) {
  // A misaligned view (e.g. of a byte buffer at an odd offset) is copied too: the kernels
  // dereference T* and load with aligned-element assumptions.
  if ((a.flags() & py::array::c_style) && (a.flags() & kAligned)) return a;
  return aligned_contiguous_copy(a);
}

py::array output(py::handle out, const Shape& shape, DType dt, const char* op, const char* arg) {
  if (out.is_none()) {
    int64_t itemsize = dt == DType::kF32 ? 4 : 8;
    checked_numel(shape, itemsize, op);
    std::vector<py::ssize_t> s(shape.begin(), shape.end());
    if (dt == DType::kF32) return py::array_t<float>(s);
    return py::array_t<double>(s);
  }
  return inout(out, shape, dt, op, arg);
}

py::array inout(py::handle obj, const Shape& shape, DType dt, const char* op, const char* arg) {
  py::array a = require_array(obj, op, arg);
  require_dtype(a, dt, op, arg);
  require_writable_buffer(a, shape, op, arg);
  return a;
}

void require_writable_buffer(const py::array& a, const Shape& shape, const char* op,
                             const char* arg) {
  if (shape_of(a) != shape) {
    throw py::value_error(std::string(op) + ": " + arg + " must have shape " + shape_str(shape) +
                          ", got " + shape_str(a));
  }
  if (!a.writeable()) {
    throw py::value_error(std::string(op) + ": " + arg +
                          " is read-only; pass a writeable array (e.g. a copy)");
  }
  if (!(a.flags() & py::array::c_style)) {
    throw py::value_error(std::string(op) + ": " + arg +
                          " must be C-contiguous; pass numpy.ascontiguousarray(...) or None");
  }
  if (!(a.flags() & kAligned)) {
    throw py::value_error(std::string(op) + ": " + arg +
                          " is not aligned to its item size (a view at an odd byte offset); "
                          "pass an aligned array (e.g. a .copy()) or None");
  }
}

namespace {

// [lo, hi) byte range spanned by an array's elements.
void byte_span(const py::array& a, uintptr_t& lo, uintptr_t& hi) {
  lo = hi = reinterpret_cast<uintptr_t>(a.data());
  if (a.size() == 0) return;
  intptr_t first = 0, last = 0;
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    intptr_t ext = static_cast<intptr_t>(a.shape(i) - 1) * a.strides(i);
    if (ext < 0) first += ext; else last += ext;
  }
  lo = reinterpret_cast<uintptr_t>(a.data()) + first;
  hi = reinterpret_cast<uintptr_t>(a.data()) + last + a.itemsize();
}

}  // namespace

bool overlaps(const py::array& a, const py::array& b) {
  uintptr_t alo, ahi, blo, bhi;
  byte_span(a, alo, ahi);
  byte_span(b, blo, bhi);
  return alo < bhi && blo < ahi;
}

void require_no_overlap(const py::array& out, const py::array& in, const char* op,
                        const char* out_arg, const char* in_arg) {
  if (overlaps(out, in)) {
    throw py::value_error(std::string(op) + ": " + out_arg + " overlaps the memory of " + in_arg +
                          "; pass a separate output array");
  }
}

void require_range(double v, double lo, double hi, const char* op, const char* what) {
  if (!(v >= lo && v <= hi)) {
    std::ostringstream os;
    os << op << ": " << what << " must be in [" << lo << ", " << hi << "], got " << v;
    throw py::value_error(os.str());
  }
}

namespace {
std::string choices_str(const std::vector<const char*>& choices) {
  std::string r;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (i) r += i + 1 == choices.size() ? " or " : ", ";
    r += std::string("'") + choices[i] + "'";
  }
  return r;
}
}  // namespace

int require_choice(py::handle obj, const std::vector<const char*>& choices, const char* op,
                   const char* arg) {
  if (!py::isinstance<py::str>(obj)) {
    throw py::type_error(std::string(op) + ": " + arg + " must be a str (" +
                         choices_str(choices) + "), got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  }
  const std::string v = obj.cast<std::string>();
  for (size_t i = 0; i < choices.size(); ++i)
    if (v == choices[i]) return static_cast<int>(i);
  throw py::value_error(std::string(op) + ": " + arg + " must be " + choices_str(choices) +
                        ", got '" + v + "'");
}

Shape element_strides(const py::array& a, const char* op, const char* arg) {
  Shape s(static_cast<size_t>(a.ndim()));
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (a.strides(i) % a.itemsize() != 0) {
      throw py::value_error(std::string(op) + ": " + arg +
                            " has strides that are not a multiple of its item size; pass "
                            "numpy.ascontiguousarray(...)");
    }
    s[i] = a.strides(i) / a.itemsize();
  }
  return s;
}

}  // namespace pydl::bind
