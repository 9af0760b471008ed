// One registration function per kernel family; module.cpp calls them all.
#pragma once

#include <pybind11/pybind11.h>

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

}  // namespace pydl::bind
