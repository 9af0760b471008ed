#include "common/dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace pydl {
namespace {

// Each family provides fill_<family>(Table&) in the generic, avx2 and avx512 namespaces. Tables are
// layered like BLIS's: reference entries first, then overridden by each ISA the table includes, so
// a family without an AVX-512 variant of some entry keeps its AVX2 one.
KernelTable make_table(Isa isa) {
  KernelTable t{};
  generic::fill_gemm(t.gemm);
  generic::fill_activations(t.act);
  generic::fill_dropout(t.dropout);
  generic::fill_penalties(t.penalty);
  generic::fill_losses(t.loss);
  generic::fill_optimizers(t.optim);
  generic::fill_conv(t.conv);
  generic::fill_pool(t.pool);
  generic::fill_norm(t.norm);
  generic::fill_embedding(t.embedding);
#if defined(PYDL_X86)
  if (isa == Isa::kAvx2 || isa == Isa::kAvx512) {
    avx2::fill_gemm(t.gemm);
    avx2::fill_activations(t.act);
    avx2::fill_dropout(t.dropout);
    avx2::fill_penalties(t.penalty);
    avx2::fill_losses(t.loss);
    avx2::fill_optimizers(t.optim);
    avx2::fill_conv(t.conv);
    avx2::fill_pool(t.pool);
    avx2::fill_norm(t.norm);
    avx2::fill_embedding(t.embedding);
  }
#if !defined(PYDL_NO_AVX512)
  if (isa == Isa::kAvx512) {
    avx512::fill_gemm(t.gemm);
    avx512::fill_activations(t.act);
    avx512::fill_dropout(t.dropout);
    avx512::fill_penalties(t.penalty);
    avx512::fill_losses(t.loss);
    avx512::fill_optimizers(t.optim);
    avx512::fill_conv(t.conv);
    avx512::fill_pool(t.pool);
    avx512::fill_norm(t.norm);
    avx512::fill_embedding(t.embedding);
  }
#endif
#else
  (void)isa;
#endif
  return t;
}

const KernelTable& table_for(Isa isa) {
  // Only the tables of ISAs this CPU supports are built: the avx2/avx512 fill functions are
  // themselves compiled with those instruction sets, so merely calling them on an older CPU
  // could fault. set_active_isa() never selects an unsupported ISA.
  static const KernelTable generic_table = make_table(Isa::kGeneric);
  switch (isa) {
    case Isa::kAvx512: {
      static const KernelTable t = make_table(Isa::kAvx512);
      return t;
    }
    case Isa::kAvx2: {
      static const KernelTable t = make_table(Isa::kAvx2);
      return t;
    }
    default: return generic_table;
  }
}

std::atomic<int> g_active{-1};

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "generic";
  }
}

bool cpu_supports(Isa isa) {
#if defined(PYDL_X86)
  switch (isa) {
    case Isa::kAvx512:
#if defined(PYDL_NO_AVX512)  // built without the AVX-512 kernels (CMake PYDL_SKIP_AVX512)
      return false;
#else
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("bmi2");
#endif
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
    default: return true;
  }
#else
  return isa == Isa::kGeneric;
#endif
}

Isa default_isa() {
  if (const char* env = std::getenv("PYDL_ARCH")) {
    if (*env) {
      for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512}) {
        if (std::strcmp(env, isa_name(isa)) == 0) {
          if (!cpu_supports(isa))
            throw std::runtime_error(std::string("PYDL_ARCH=") + env +
                                     ": this CPU does not support that instruction set; "
                                     "use generic, avx2 or avx512 as the CPU allows");
          return isa;
        }
      }
      throw std::runtime_error(std::string("PYDL_ARCH=") + env +
                               ": unknown instruction set; expected generic, avx2 or avx512");
    }
  }
  if (cpu_supports(Isa::kAvx512)) return Isa::kAvx512;
  if (cpu_supports(Isa::kAvx2)) return Isa::kAvx2;
  return Isa::kGeneric;
}

Isa active_isa() {
  int a = g_active.load(std::memory_order_acquire);
  if (a < 0) {
    int expected = -1;
    g_active.compare_exchange_strong(expected, static_cast<int>(default_isa()));
    a = g_active.load(std::memory_order_acquire);
  }
  return static_cast<Isa>(a);
}

void set_active_isa(Isa isa) {
  if (!cpu_supports(isa))
    throw std::runtime_error(std::string("instruction set ") + isa_name(isa) +
                             " is not supported by this CPU");
  g_active.store(static_cast<int>(isa), std::memory_order_release);
}

const KernelTable& kernels() { return table_for(active_isa()); }

}  // namespace pydl
