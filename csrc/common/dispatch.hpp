// Runtime kernel dispatch.
//
// Every kernel family declares a table of function pointers in its header and fills it from
// three translation units: the generic/reference one (plain C++, baseline x86-64) and the *_avx2
// and *_avx512 ones (compiled with those flags). At start-up the table for the best ISA the CPU
// supports (or the one PYDL_ARCH names) is chosen once; tests may switch it via set_active_isa.
#pragma once

#include "activations/activations.hpp"
#include "conv/conv.hpp"
#include "dropout/dropout.hpp"
#include "embedding/embedding.hpp"
#include "gemm/gemm.hpp"
#include "losses/losses.hpp"
#include "norm/norm.hpp"
#include "optimizers/optimizers.hpp"
#include "penalties/penalties.hpp"
#include "pool/pool.hpp"

namespace pydl {

enum class Isa : int { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

struct KernelTable {
  GemmTable gemm;
  ActTable act;
  DropoutTable dropout;
  PenaltyTable penalty;
  LossTable loss;
  OptimTable optim;
  ConvTable conv;
  PoolTable pool;
  NormTable norm;
  EmbeddingTable embedding;
};

const char* isa_name(Isa isa);
bool cpu_supports(Isa isa);
// The ISA chosen at import: PYDL_ARCH if set and supported, else the best supported one.
// Throws std::runtime_error if PYDL_ARCH names an unknown or unsupported ISA.
Isa default_isa();
Isa active_isa();
// Switches every later kernel call to `isa` (for tests and bug reports). Throws if unsupported.
void set_active_isa(Isa isa);
const KernelTable& kernels();

// The float or the double half of a family's table: fns_of<T>(kernels().act).
template <typename T, typename Table>
const auto& fns_of(const Table& t) {
  if constexpr (sizeof(T) == 4) {
    return t.f32;
  } else {
    return t.f64;
  }
}

}  // namespace pydl
