// pydl._core: the compiled kernels. Private; the public surface is pydl.kernels.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "bindings/bindings.hpp"
#include "common/dispatch.hpp"
#include "common/parallel.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "pydl compiled kernels (private; use pydl.kernels)";

  // Resolve PYDL_ARCH at import so that a bad value fails loudly at `import pydl`.
  pydl::active_isa();

  m.def("get_num_threads", &pydl::get_num_threads,
        "Return the number of threads kernels may use.");
  m.def(
      "set_num_threads",
      [](py::handle n) {
        if (!py::isinstance<py::int_>(n) || py::isinstance<py::bool_>(n))
          throw py::type_error("set_num_threads: n must be an int, got " +
                               std::string(py::str(py::type::handle_of(n).attr("__name__"))));
        // Not n.cast<long long>(): an int beyond 64 bits would surface as pybind11's RuntimeError.
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(n.ptr(), &overflow);
        if (overflow != 0 || v < 1 || v > 1024)
          throw py::value_error("set_num_threads: n must be in [1, 1024], got " +
                                std::string(py::str(n)));
        pydl::set_num_threads(static_cast<int>(v));
      },
      py::arg("n"), "Set the number of threads kernels may use (>= 1).");
  m.def("isa", [] { return std::string(pydl::isa_name(pydl::active_isa())); },
        "Return the instruction set the kernels dispatch to.");
  m.def(
      "supported_isas",
      [] {
        py::list out;
        for (pydl::Isa isa : {pydl::Isa::kGeneric, pydl::Isa::kAvx2, pydl::Isa::kAvx512})
          if (pydl::cpu_supports(isa)) out.append(pydl::isa_name(isa));
        return out;
      },
      "Return the instruction sets this CPU can run, weakest first.");
  m.def(
      "_set_isa",
      [](const std::string& name) {
        for (pydl::Isa isa : {pydl::Isa::kGeneric, pydl::Isa::kAvx2, pydl::Isa::kAvx512}) {
          if (name == pydl::isa_name(isa)) {
            if (!pydl::cpu_supports(isa))
              throw py::value_error("_set_isa: this CPU does not support " + name);
            pydl::set_active_isa(isa);
            return;
          }
        }
        throw py::value_error("_set_isa: unknown instruction set '" + name +
                              "'; expected generic, avx2 or avx512");
      },
      py::arg("name"), "Switch kernel dispatch (testing only; affects the whole process).");

  pydl::bind::bind_gemm(m);
  pydl::bind::bind_activations(m);
  pydl::bind::bind_dropout(m);
  pydl::bind::bind_penalties(m);
  pydl::bind::bind_losses(m);
  pydl::bind::bind_optimizers(m);
  pydl::bind::bind_conv(m);
  pydl::bind::bind_pool(m);
  pydl::bind::bind_norm(m);
  pydl::bind::bind_embedding(m);
  pydl::bind::bind_program(m);
}
