// Bindings for the fused loss kernels (losses/losses.hpp): softmax_cross_entropy,
// bce_with_logits, mse. Each returns (loss, gradient of the loss w.r.t. its first argument).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "losses/losses.hpp"

namespace pydl::bind {
namespace {

// Mean over n items; an empty mean is NaN, as in PyTorch.
double reduce(double total, int64_t n, bool mean) {
  return mean ? total / static_cast<double>(n) : total;
}

py::tuple softmax_cross_entropy(py::handle logits_obj, py::handle labels_obj,
                                RealArg label_smoothing_obj, py::handle reduction,
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
  const double eps = real_in(label_smoothing_obj, 0.0, 1.0, op, "label_smoothing");
  const bool mean = parse_reduction(reduction, op);
  const std::vector<int64_t> labels = checked_labels(labels_in, cols, op);
  py::array dlogits = output(dlogits_obj, shape_of(logits_in), dt, op, "dlogits");
  require_no_overlap(dlogits, logits_in, op, "dlogits", "logits");
  const py::array logits = contiguous(logits_in);
  const double dscale = mean ? 1.0 / static_cast<double>(rows) : 1.0;
  const double total = by_dtype(dt, [&](auto t) {
    using T = decltype(t);
    return nogil(losses::softmax_xent<T>, ptr<T>(dlogits), cptr<T>(logits), labels.data(), rows,
                 cols, eps, dscale);
  });
  return py::make_tuple(reduce(total, rows, mean), dlogits);
}

// The element-wise losses (kernel `which`: 0 bce_with_logits, 1 mse): loss and gradient w.r.t. a.
py::tuple elementwise_loss(const char* op, int which, py::handle a_obj, py::handle b_obj,
                           const char* a_name, const char* b_name, py::handle reduction,
                           py::handle out_obj, const char* out_name) {
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
  const double total = by_dtype(dt, [&](auto t) {
    using T = decltype(t);
    return nogil(which == 0 ? losses::bce_with_logits<T> : losses::mse<T>, ptr<T>(out),
                 cptr<T>(a), cptr<T>(b), n, dscale);
  });
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
      [](py::handle logits, py::handle targets, py::handle reduction, py::handle dlogits) {
        return elementwise_loss("bce_with_logits", 0, logits, targets, "logits", "targets",
                                reduction, dlogits, "dlogits");
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
      [](py::handle pred, py::handle target, py::handle reduction, py::handle dpred) {
        return elementwise_loss("mse", 1, pred, target, "pred", "target", reduction, dpred,
                                "dpred");
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
