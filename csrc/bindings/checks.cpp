#include "bindings/checks.hpp"

#include "bindings/bindings.hpp"

#include <cmath>
#include <limits>
#include <sstream>
#include <utility>

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
  if (r != a.ptr()) capture_fail();  // a copy: its contents would be frozen in a capture
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
    py::array r = dt == DType::kF32 ? py::array(py::array_t<float>(s))
                                    : py::array(py::array_t<double>(s));
    if (Capture* c = active_capture()) {
      // Captured kernels will write into this array on every replay: keep it alive. A deferred
      // capture cannot use it (the op's consumers read the buffer recorded earlier).
      if (c->mode == Capture::kDefer) c->failed = true;
      c->keep.push_back(r);
    }
    return r;
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

std::array<py::object, 3> gradient_outputs(const GradOut (&grads)[3], DType dt, const char* op,
                                           NamedArrays ins) {
  static const char* const names[3] = {"dx_out", "dw_out", "db_out"};
  std::array<py::object, 3> outs = {py::none(), py::none(), py::none()};
  for (int i = 0; i < 3; ++i) {
    if (!grads[i].need) continue;
    const auto out = output(grads[i].out, grads[i].shape, dt, op, names[i]);
    for (const auto& in : ins) {
      if (!in.first.is_none())
        require_no_overlap(out, py::reinterpret_borrow<py::array>(in.first), op, names[i], in.second);
    }
    for (int e = 0; e < i; ++e) {
      if (!outs[e].is_none())
        require_no_overlap(out, py::reinterpret_borrow<py::array>(outs[e]), op, names[i], names[e]);
    }
    outs[i] = out;
  }
  return outs;
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

py::object optional_vector(py::handle obj, int64_t n, DType dt, const char* op, const char* arg) {
  if (obj.is_none()) return py::none();
  const py::array a = require_array(obj, op, arg);
  require_dtype(a, dt, op, arg);
  if (a.ndim() != 1 || a.shape(0) != n) {
    throw py::value_error(std::string(op) + ": " + arg + " must have shape (" +
                          std::to_string(n) + ",), got " + shape_str(a));
  }
  return contiguous(a);
}

Shape int_tuple(py::handle obj, size_t n, int64_t min, const char* op, const char* arg) {
  auto one = [&](py::handle v) -> int64_t {
    if (!py::isinstance<py::int_>(v) || py::isinstance<py::bool_>(v)) {
      // numpy integers are accepted too
      if (!py::hasattr(v, "__index__") || py::isinstance<py::bool_>(v) ||
          py::isinstance<py::float_>(v))
        throw py::type_error(std::string(op) + ": " + arg + " must be an int or a tuple of " +
                             std::to_string(n) + " ints, got " +
                             std::string(py::str(py::type::handle_of(v).attr("__name__"))));
    }
    int overflow = 0;
    py::object idx = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr()));
    if (!idx) {  // e.g. a 0-d float array: it has __index__ but refuses it
      PyErr_Clear();
      throw py::type_error(std::string(op) + ": " + arg + " must be an int or a tuple of " +
                           std::to_string(n) + " ints, got " + std::string(py::str(py::repr(v))));
    }
    const long long x = PyLong_AsLongLongAndOverflow(idx.ptr(), &overflow);
    if (overflow != 0 || x < min || x > (int64_t{1} << 40)) {
      throw py::value_error(std::string(op) + ": " + arg + " must be >= " + std::to_string(min) +
                            ", got " + std::string(py::str(v)));
    }
    return static_cast<int64_t>(x);
  };
  if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) {
    py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
    if (seq.size() != n) {
      throw py::value_error(std::string(op) + ": " + arg + " must have " + std::to_string(n) +
                            " entries (one per spatial axis), got " + std::string(py::str(obj)));
    }
    Shape out;
    for (size_t i = 0; i < n; ++i) out.push_back(one(seq[i]));
    return out;
  }
  return Shape(n, one(obj));
}

int64_t window_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil,
                        const char* op, const char* axis) {
  const int64_t span = dil * (k - 1) + 1;
  const int64_t padded = in + 2 * pad;
  if (padded < span) {
    throw py::value_error(std::string(op) + ": the window (kernel " + std::to_string(k) +
                          ", dilation " + std::to_string(dil) + ", spanning " +
                          std::to_string(span) + ") is larger than the padded input " + axis +
                          " (" + std::to_string(in) + " + 2 * padding " + std::to_string(pad) +
                          " = " + std::to_string(padded) +
                          "), so the output would be empty; use a smaller kernel or more padding");
  }
  return (padded - span) / stride + 1;
}

Window window_geometry(const Shape& in, const Shape& kernel, const Shape& stride, const Shape& pad,
                       const Shape& dilation, bool same, const char* op) {
  const size_t nd = in.size();
  Shape out(nd);
  for (size_t i = 0; i < nd; ++i) {
    out[i] = same ? in[i]
                  : window_out_size(in[i], kernel[i], stride[i], pad[i], dilation[i], op,
                                    nd == 1 ? "length" : (i == 0 ? "height" : "width"));
  }
  // The last axis is the width; a 2-d window's first axis is its height.
  Window w;
  if (nd == 2) {
    w.kh = kernel[0];
    w.sh = stride[0];
    w.ph = pad[0];
    w.dh = dilation[0];
    w.oh = out[0];
  }
  w.kw = kernel[nd - 1];
  w.sw = stride[nd - 1];
  w.pw = pad[nd - 1];
  w.dw = dilation[nd - 1];
  w.ow = out[nd - 1];
  return w;
}

namespace {
[[noreturn]] void index_out_of_range(int64_t v, int64_t i, int64_t bound, const char* op,
                                     const char* arg) {
  throw py::value_error(std::string(op) + ": " + arg + " has value " + std::to_string(v) +
                        " at flat position " + std::to_string(i) + ", out of range [0, " +
                        std::to_string(bound) + ")");
}
}  // namespace

const int64_t* int64_indices(const py::array& a, int64_t bound, const char* op, const char* arg) {
  if (!a.dtype().equal(py::dtype::of<int64_t>()) || !(a.flags() & py::array::c_style)) return nullptr;
  const int64_t* p = cptr<int64_t>(a);
  for (int64_t i = 0, n = a.size(); i < n; ++i) {
    if (p[i] < 0 || p[i] >= bound) {
      index_out_of_range(p[i], i, bound, op, arg);
    }
  }
  return p;
}

std::vector<int64_t> checked_indices(const py::array& a, int64_t bound, const char* op,
                                     const char* arg) {
  const py::dtype dt = a.dtype();
  const bool i64 = dt.equal(py::dtype::of<int64_t>());
  if (!i64 && !dt.equal(py::dtype::of<int32_t>())) {
    throw py::type_error(std::string(op) + ": " + arg +
                         " must be an integer array (int32 or int64), got dtype " +
                         std::string(py::str(dt)) + "; cast with .astype(numpy.int64)");
  }
  const py::array c = contiguous(a);
  const int64_t n = c.size();
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = i64 ? cptr<int64_t>(c)[i] : cptr<int32_t>(c)[i];
    if (v < 0 || v >= bound) {
      index_out_of_range(v, i, bound, op, arg);
    }
    out[static_cast<size_t>(i)] = v;
  }
  return out;
}

}  // namespace pydl::bind

namespace pydl::bind {

namespace {
std::string type_name(py::handle obj) {
  return std::string(py::str(py::type::handle_of(obj).attr("__name__")));
}
}  // namespace

double real_arg(RealArg v, const char* op, const char* arg) {
  // bool is an int to Python, but True as a probability or a rate is a bug, not 1.0.
  double d = PyBool_Check(v.obj.ptr()) ? -1.0 : PyFloat_AsDouble(v.obj.ptr());
  if (d == -1.0 && (PyBool_Check(v.obj.ptr()) || PyErr_Occurred())) {
    PyErr_Clear();
    throw py::type_error(std::string(op) + ": " + arg + " must be a real number, got " +
                         type_name(v.obj));
  }
  return d;
}

double real_in(RealArg v, double lo, double hi, const char* op, const char* arg) {
  double d = real_arg(v, op, arg);
  require_range(d, lo, hi, op, arg);
  return d;
}

void require_nonneg_finite(double v, const char* op, const char* what, const std::string& why) {
  if (!(v >= 0.0 && std::isfinite(v))) {
    std::ostringstream os;
    os << op << ": " << what << " must be a finite number >= 0, got " << v << why;
    throw py::value_error(os.str());
  }
}

void require_same_dtype(const py::array& b, DType da, const char* op, const char* name_a,
                        const char* name_b) {
  DType db = float_dtype(b, op, name_b);
  if (db != da) {
    throw py::type_error(std::string(op) + ": " + name_a + " and " + name_b +
                         " must have the same dtype, got " + dtype_name(da) + " and " +
                         dtype_name(db) + "; pass both in one dtype");
  }
}

void require_same_or_disjoint(const py::array& out, const py::array& in, const char* op,
                              const char* out_arg, const char* in_arg) {
  if (out.data() != in.data()) require_no_overlap(out, in, op, out_arg, in_arg);
}

int normalize_axis(const py::array& x, int64_t axis, const char* op) {
  int64_t nd = x.ndim();
  if (axis < -nd || axis >= nd) {
    throw py::value_error(std::string(op) + ": axis " + std::to_string(axis) +
                          " is out of bounds for x of shape " + shape_str(x) + " (ndim " +
                          std::to_string(nd) + ")");
  }
  return static_cast<int>(axis < 0 ? axis + nd : axis);
}

bool parse_reduction(py::handle reduction, const char* op) {
  if (!py::isinstance<py::str>(reduction)) {
    throw py::type_error(std::string(op) + ": reduction must be a str (\"mean\" or \"sum\"), got " +
                         type_name(reduction));
  }
  const std::string r = reduction.cast<std::string>();
  if (r == "mean") return true;
  if (r == "sum") return false;
  throw py::value_error(std::string(op) + ": reduction must be \"mean\" or \"sum\", got \"" + r +
                        "\"");
}

std::vector<int64_t> checked_labels(const py::array& labels, int64_t classes, const char* op) {
  const py::dtype dt = labels.dtype();
  const bool i64 = dt.equal(py::dtype::of<int64_t>());
  if (!i64 && !dt.equal(py::dtype::of<int32_t>())) {
    throw py::type_error(std::string(op) + ": labels must have dtype int32 or int64, got " +
                         std::string(py::str(dt)) + "; cast them with .astype(numpy.int64)");
  }
  const py::array c = contiguous(labels);
  const int64_t n = c.size();
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = i64 ? cptr<int64_t>(c)[i] : cptr<int32_t>(c)[i];
    if (v < 0 || v >= classes) {
      throw py::value_error(std::string(op) + ": labels[" + std::to_string(i) + "] = " +
                            std::to_string(v) + " is out of range for C = " +
                            std::to_string(classes) + " classes; labels must be in [0, " +
                            std::to_string(classes) + ")");
    }
    out[i] = v;
  }
  return out;
}

Act parse_linear_activation(py::handle act, const char* op) {
  if (act.is_none()) return Act::kNone;
  if (!py::isinstance<py::str>(act)) {
    throw py::type_error(std::string(op) + ": activation must be None or a str, got " +
                         type_name(act));
  }
  static const std::pair<const char*, Act> kNames[] = {
      {"relu", Act::kRelu},       {"leaky_relu", Act::kLeakyRelu}, {"elu", Act::kElu},
      {"sigmoid", Act::kSigmoid}, {"tanh", Act::kTanh},            {"gelu", Act::kGelu},
      {"gelu_tanh", Act::kGeluTanh}, {"silu", Act::kSilu}};
  const std::string name = act.cast<std::string>();
  for (const auto& [n, a] : kNames)
    if (name == n) return a;
  throw py::value_error(std::string(op) + ": unknown activation '" + name +
                        "'; expected None, 'relu', 'leaky_relu', 'elu', 'sigmoid', 'tanh', "
                        "'gelu', 'gelu_tanh' or 'silu'");
}

double drop_probability(RealArg p_obj, const char* op) {
  const double p = real_arg(p_obj, op, "p");
  if (!(p >= 0.0 && p < 1.0)) {
    std::ostringstream os;
    os << op << ": p (the drop probability) must be in [0, 1), got " << p;
    throw py::value_error(os.str());
  }
  return p;
}

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

namespace {
bool is_uint8(const py::array& a) { return a.dtype().equal(py::dtype::of<uint8_t>()); }
}  // namespace

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

}  // namespace pydl::bind
