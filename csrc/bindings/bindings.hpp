// Shared by the binding files: one registration function per kernel family (module.cpp calls them
// all) and the two helpers every entry uses between validation (checks.hpp) and the kernels.
#pragma once

#include <pybind11/pybind11.h>

#include <utility>

#include "bindings/checks.hpp"

namespace pydl::bind {

void bind_gemm(pybind11::module_& m);
void bind_activations(pybind11::module_& m);
void bind_dropout(pybind11::module_& m);
void bind_penalties(pybind11::module_& m);
void bind_losses(pybind11::module_& m);
void bind_optimizers(pybind11::module_& m);
void bind_conv(pybind11::module_& m);
void bind_pool(pybind11::module_& m);
void bind_norm(pybind11::module_& m);
void bind_embedding(pybind11::module_& m);

// The one dtype switch: f(T{}) with T = float for kF32 and double for kF64.
template <typename F>
decltype(auto) by_dtype(DType dt, F&& f) {
  if (dt == DType::kF32) return f(float{});
  return f(double{});
}

// fn(args...) with the GIL released. The arguments (pointers into arrays, sizes) are evaluated
// before the release, while Python objects may still be touched.
template <typename Fn, typename... A>
decltype(auto) nogil(Fn&& fn, A&&... args) {
  pybind11::gil_scoped_release release;
  return fn(std::forward<A>(args)...);
}

}  // namespace pydl::bind
