// Bindings for the fused loss kernels (losses/losses.hpp): softmax_cross_entropy,
// bce_with_logits, mse. Each returns (loss, gradient of the loss w.r.t. its first argument).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "common/dispatch.hpp"
#include "common/parallel.hpp"

namespace pydl::bind {
namespace {

// Elements per reduction block. Block boundaries depend only on the shape, and block sums are
// added in block order, so the loss has the same bits for any thread count. 16K elements keep
// a block's inputs and gradient in L2 and make the pool's per-task cost negligible.
constexpr int64_t kBlockElems = int64_t{1} << 14;

// Sum of block_sum(b) over b in [0, n_blocks): blocks run on the pool, partials added in order.
template <typename F>
double blocked_sum(int64_t n_blocks, F&& block_sum) {
  std::vector<double> partial(static_cast<size_t>(n_blocks));
  parallel_for(n_blocks, [&](int64_t b) { partial[b] = block_sum(b); });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

// True for "mean", false for "sum".
bool parse_reduction(const std::string& reduction, const char* op) {
  if (reduction == "mean") return true;
  if (reduction == "sum") return false;
  throw py::value_error(std::string(op) + ": reduction must be \"mean\" or \"sum\", got \"" +
                        reduction + "\"");
}

// Mean over n items; an empty mean is NaN, as in PyTorch.
double reduce(double total, int64_t n, bool mean) {
  return mean ? total / static_cast<double>(n) : total;
}

// Labels as int64 (int32 is widened), each checked to lie in [0, classes).
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

template <typename T>
double run_softmax_xent(const LossFns<T>& fns, py::array& dlogits, const py::array& logits,
                        const int64_t* labels, double label_smoothing, double dscale) {
  const int64_t rows = logits.shape(0), cols = logits.shape(1);
  T* d = ptr<T>(dlogits);
  const T* x = cptr<T>(logits);
  py::gil_scoped_release release;
  const int64_t rows_per_block = cols > 0 && cols < kBlockElems ? kBlockElems / cols : 1;
  const int64_t n_blocks = (rows + rows_per_block - 1) / rows_per_block;
  return blocked_sum(n_blocks, [&](int64_t b) {
    const int64_t r0 = b * rows_per_block;
    const int64_t nr = rows - r0 < rows_per_block ? rows - r0 : rows_per_block;
    return fns.softmax_xent(d + r0 * cols, x + r0 * cols, labels + r0, nr, cols, label_smoothing,
                            dscale);
  });
}

py::tuple softmax_cross_entropy(py::handle logits_obj, py::handle labels_obj,
                                double label_smoothing, const std::string& reduction,
                                py::handle dlogits_obj) {
  const char* op = "softmax_cross_entropy";
  const py::array logits_in = require_array(logits_obj, op, "logits");
  const DType dt = float_dtype(logits_in, op, "logits");
  require_ndim(logits_in, 2, op, "logits");
  const py::array labels_in = require_array(labels_obj, op, "labels");
  require_ndim(labels_in, 1, op, "labels");
  const int64_t rows = logits_in.shape(0), cols = logits_in.shape(1);
  if (labels_in.shape(0) != rows) {
    throw py::value_error(std::string(op) + ": labels must have shape (" + std::to_string(rows) +
                          ",) to match logits of shape " + shape_str(logits_in) + ", got " +
                          shape_str(labels_in));
  }
  require_range(label_smoothing, 0.0, 1.0, op, "label_smoothing");
  const bool mean = parse_reduction(reduction, op);
  const std::vector<int64_t> labels = checked_labels(labels_in, cols, op);
  py::array dlogits = output(dlogits_obj, shape_of(logits_in), dt, op, "dlogits");
  require_no_overlap(dlogits, logits_in, op, "dlogits", "logits");
  const py::array logits = contiguous(logits_in);

  const double dscale = mean ? 1.0 / static_cast<double>(rows) : 1.0;
  const LossTable& t = kernels().loss;
  const double total =
      dt == DType::kF32
          ? run_softmax_xent(t.f32, dlogits, logits, labels.data(), label_smoothing, dscale)
          : run_softmax_xent(t.f64, dlogits, logits, labels.data(), label_smoothing, dscale);
  return py::make_tuple(reduce(total, rows, mean), dlogits);
}

// The element-wise losses: loss and gradient w.r.t. `a`, blocks of kBlockElems elements.
// `pick` selects the kernel from a LossFns<T> (called for both dtypes).
template <typename Pick>
py::tuple elementwise_loss(const char* op, py::handle a_obj, py::handle b_obj,
                           const char* a_name, const char* b_name, const std::string& reduction,
                           py::handle out_obj, const char* out_name, Pick pick) {
  const py::array a_in = require_array(a_obj, op, a_name);
  const DType dt = float_dtype(a_in, op, a_name);
  const py::array b_in = require_array(b_obj, op, b_name);
  require_dtype(b_in, dt, op, b_name);
  require_same_shape(a_in, b_in, op, a_name, b_name);
  const bool mean = parse_reduction(reduction, op);
  py::array out = output(out_obj, shape_of(a_in), dt, op, out_name);
  require_no_overlap(out, a_in, op, out_name, a_name);
  require_no_overlap(out, b_in, op, out_name, b_name);
  const py::array a = contiguous(a_in), b = contiguous(b_in);
  const int64_t n = a.size();
  const double dscale = mean ? 1.0 / static_cast<double>(n) : 1.0;

  auto run = [&](const auto& fns, auto* d) {
    using T = std::remove_pointer_t<decltype(d)>;
    const auto fn = pick(fns);
    const T* pa = cptr<T>(a);
    const T* pb = cptr<T>(b);
    py::gil_scoped_release release;
    return blocked_sum((n + kBlockElems - 1) / kBlockElems, [&](int64_t blk) {
      const int64_t i0 = blk * kBlockElems;
      const int64_t len = n - i0 < kBlockElems ? n - i0 : kBlockElems;
      return fn(d + i0, pa + i0, pb + i0, len, dscale);
    });
  };
  const LossTable& t = kernels().loss;
  const double total = dt == DType::kF32 ? run(t.f32, ptr<float>(out))
                                         : run(t.f64, ptr<double>(out));
  return py::make_tuple(reduce(total, n, mean), out);
}

}  // namespace

void bind_losses(py::module_& m) {
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("labels"),
        py::kw_only(), py::arg("label_smoothing") = 0.0, py::arg("reduction") = "mean",
        py::arg("dlogits") = py::none(),
        R"doc(Compute the softmax cross-entropy of class logits and its gradient in one pass.

Same value as ``torch.nn.CrossEntropyLoss(label_smoothing=eps, reduction=...)`` with class-index
targets: with q = (1 - eps) * onehot(label) + eps / C, each row's loss is
-sum_c q_c * log_softmax(logits)_c, and the gradient is (softmax(logits) - q) / N for "mean"
(/ 1 for "sum"). Rows are shifted by their maximum, so logits up to +-1e20 stay finite. The value
is bit-identical for any thread count. An empty batch with "mean" gives nan (as in PyTorch).

Args:
    logits: (N, C) float32 or float64 array, any strides.
    labels: (N,) int32 or int64 array of class indices in [0, C).
    label_smoothing: eps in [0, 1]. Default 0.0.
    reduction: "mean" (default) or "sum".
    dlogits: optional preallocated (N, C) output of the logits' dtype, writeable, C-contiguous and
        not overlapping ``logits``. Default None (a new array).

Returns:
    (loss, dlogits): the loss as a Python float and the gradient w.r.t. ``logits``.

Raises:
    TypeError: a non-array, logits not float32/float64, labels not int32/int64, or dlogits of
        another dtype.
    ValueError: logits not 2-D, labels not (N,), a label outside [0, C), label_smoothing outside
        [0, 1], an unknown reduction, or an unusable dlogits array.

Example:
    >>> loss, d = softmax_cross_entropy(np.zeros((2, 4), np.float32), np.array([0, 3]))
    >>> round(loss, 4)  # log(4)
    1.3863
)doc");

  m.def(
      "bce_with_logits",
      [](py::handle logits, py::handle targets, const std::string& reduction,
         py::handle dlogits) {
        return elementwise_loss("bce_with_logits", logits, targets, "logits", "targets",
                                reduction, dlogits, "dlogits",
                                [](const auto& fns) { return fns.bce_with_logits; });
      },
      py::arg("logits"), py::arg("targets"), py::kw_only(), py::arg("reduction") = "mean",
      py::arg("dlogits") = py::none(),
      R"doc(Compute binary cross-entropy on logits and its gradient in one pass.

Same value as ``torch.nn.BCEWithLogitsLoss(reduction=...)``, element-wise in the stable form
max(x, 0) - x * t + log1p(exp(-|x|)) (finite for logits of +-1000 and beyond); the gradient is
(sigmoid(x) - t) / numel for "mean" (/ 1 for "sum"). The value is bit-identical for any thread
count; an empty input with "mean" gives nan.

Args:
    logits: float32 or float64 array of any shape and strides.
    targets: array of the same shape and dtype (probabilities, usually 0 or 1).
    reduction: "mean" (default) or "sum".
    dlogits: optional preallocated output shaped like ``logits``, same dtype, writeable,
        C-contiguous, overlapping neither input. Default None (a new array).

Returns:
    (loss, dlogits): the loss as a Python float and the gradient w.r.t. ``logits``.

Raises:
    TypeError: a non-array, a dtype other than float32/float64 or mixed dtypes.
    ValueError: shapes differ (both are named), an unknown reduction, or an unusable dlogits.
)doc");

  m.def(
      "mse",
      [](py::handle pred, py::handle target, const std::string& reduction, py::handle dpred) {
        return elementwise_loss("mse", pred, target, "pred", "target", reduction, dpred, "dpred",
                                [](const auto& fns) { return fns.mse; });
      },
      py::arg("pred"), py::arg("target"), py::kw_only(), py::arg("reduction") = "mean",
      py::arg("dpred") = py::none(),
      R"doc(Compute the mean squared error and its gradient in one pass.

Same value as ``torch.nn.MSELoss(reduction=...)``: sum((pred - target)^2), divided by numel for
"mean"; the gradient is 2 * (pred - target) / numel for "mean" (/ 1 for "sum"). The value is
bit-identical for any thread count; an empty input with "mean" gives nan.

Args:
    pred: float32 or float64 array of any shape and strides.
    target: array of the same shape and dtype.
    reduction: "mean" (default) or "sum".
    dpred: optional preallocated output shaped like ``pred``, same dtype, writeable,
        C-contiguous, overlapping neither input. Default None (a new array).

Returns:
    (loss, dpred): the loss as a Python float and the gradient w.r.t. ``pred``.

Raises:
    TypeError: a non-array, a dtype other than float32/float64 or mixed dtypes.
    ValueError: shapes differ (both are named), an unknown reduction, or an unusable dpred.
)doc");
}

}  // namespace pydl::bind
