// Bindings for the embedding kernels (embedding/embedding.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "common/dispatch.hpp"

namespace pydl::bind {
namespace {

py::array embedding_forward(py::handle w_obj, py::handle idx_obj) {
  const char* op = "embedding_forward";
  const py::array w_in = require_array(w_obj, op, "weight");
  const DType dt = float_dtype(w_in, op, "weight");
  require_ndim(w_in, 2, op, "weight");
  const py::array idx_in = require_array(idx_obj, op, "indices");
  const int64_t v = w_in.shape(0), d = w_in.shape(1);
  const std::vector<int64_t> idx = checked_indices(idx_in, v, op, "indices");
  Shape os = shape_of(idx_in);
  os.push_back(d);
  py::array out = output(py::none(), os, dt, op);
  const py::array w = contiguous(w_in);
  by_dtype(dt, [&](auto zero) {
    using T = decltype(zero);
    const EmbeddingFns<T>& fns = of_dtype<T>(kernels().embedding);
    T* po = ptr<T>(out);
    const T* pw = cptr<T>(w);
    capture_fail();  // reads the checked copy of the indices made above
    py::gil_scoped_release release;
    fns.forward(po, pw, idx.data(), static_cast<int64_t>(idx.size()), d);
  });
  return out;
}

py::array embedding_backward(py::handle dout_obj, py::handle idx_obj, py::handle dw_obj,
                             int64_t padding_idx) {
  const char* op = "embedding_backward";
  const py::array dw_arr = require_array(dw_obj, op, "dweight");
  const DType dt = float_dtype(dw_arr, op, "dweight");
  require_ndim(dw_arr, 2, op, "dweight");
  const int64_t v = dw_arr.shape(0), d = dw_arr.shape(1);
  py::array dw = inout(dw_obj, Shape{v, d}, dt, op, "dweight");
  const py::array idx_in = require_array(idx_obj, op, "indices");
  const std::vector<int64_t> idx = checked_indices(idx_in, v, op, "indices");
  const py::array dout_in = require_array(dout_obj, op, "dout");
  require_dtype(dout_in, dt, op, "dout");
  Shape os = shape_of(idx_in);
  os.push_back(d);
  if (shape_of(dout_in) != os) {
    throw py::value_error(std::string(op) + ": dout must have shape " + shape_str(os) +
                          " (indices.shape + (embedding_dim,)), got " + shape_str(dout_in));
  }
  require_no_overlap(dw, dout_in, op, "dweight", "dout");
  const py::array dout = contiguous(dout_in);
  by_dtype(dt, [&](auto zero) {
    using T = decltype(zero);
    const EmbeddingFns<T>& fns = of_dtype<T>(kernels().embedding);
    T* pdw = ptr<T>(dw);
    const T* pd = cptr<T>(dout);
    capture_fail();  // reads the checked copy of the indices made above
    py::gil_scoped_release release;
    fns.backward(pdw, pd, idx.data(), static_cast<int64_t>(idx.size()), v, d, padding_idx);
  });
  return dw;
}

}  // namespace

void bind_embedding(py::module_& m) {
  m.def("embedding_forward", &embedding_forward, py::arg("weight"), py::arg("indices"),
        R"doc(Gather rows of an embedding table: out[...] = weight[indices[...]].

Args:
    weight: (V, D) float32/float64 array.
    indices: int32/int64 array of any shape with values in [0, V).

Returns:
    out of shape indices.shape + (D,).

Raises:
    TypeError: non-integer indices or a non-float weight.
    ValueError: an index outside [0, V) (its position and value are named), weight not 2-D.
)doc");
  m.def("embedding_backward", &embedding_backward, py::arg("dout"), py::arg("indices"),
        py::arg("dweight"), py::kw_only(), py::arg("padding_idx") = -1,
        R"doc(Add the gradient of embedding_forward into dweight (in place) and return it.

dweight[v] += the sum of dout[i] over the positions i whose index is v, added in increasing i
(bit-identical for any thread count). Rows equal to padding_idx get nothing (-1: none).

Args:
    dout: gradient w.r.t. out, shape indices.shape + (D,). indices: as given to the forward.
    dweight: (V, D) writeable, C-contiguous accumulator of dout's dtype.
    padding_idx: row that receives no gradient, or -1. Default -1.

Returns:
    dweight.
)doc");
}

}  // namespace pydl::bind
