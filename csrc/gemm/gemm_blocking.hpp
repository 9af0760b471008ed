// Cache blocking of the GEMM driver: KC, MC, NC from the detected caches (BLIS's analytical model,
// Low et al., "Analytical modeling is enough for high-performance BLIS", TOMS 2016).
//
// For a micro-kernel of MR x NR elements of S bytes and a cache level with W ways of N sets of
// L-byte lines (one way holds N * L bytes):
//  - KC: the KC x NR micro-panel of packed B stays in L1 while MR x KC micro-panels of A stream
//    past it. B gets C_B ways and A the ways its share needs, ceil(C_B * MR / NR); one way is left
//    for C and the rest. C_B is the largest value with C_B + ceil(C_B * MR / NR) <= W - 1, and
//    KC = C_B * N * L / (NR * S): B's micro-panel fills its ways exactly.
//  - MC: the MC x KC block of packed A stays in L2 while B micro-panels pass through: A gets
//    W - 1 - ceil(KC * NR * S / (N * L)) ways (one for C, enough for one B micro-panel), and
//    MC = ways * N * L / (KC * S), rounded down to a multiple of MR.
//  - NC: the KC x NC block of packed B stays in this core's share of L3 (size / sharing cores),
//    two ways kept for the A block and C passing through; rounded down to a multiple of NR.
// No constant here is tuned for one CPU: a 48 KiB 12-way L1 gives a larger KC than a 32 KiB
// 8-way one, a 1 MiB L2 a larger MC than a 512 KiB one.
//
// PYDL_GEMM_BLOCKING="kc,mc,nc" overrides the model for every ISA and dtype (experiments, bug
// reports): three positive integers, kc in [8, 8192], mc in [1, 65536], nc in [1, 1048576];
// mc is then rounded up to a multiple of MR and nc to one of NR. Any other value makes
// `import pydl` fail with a message naming the variable and the expected form.
#pragma once

#include <cstdint>
#include <string>

#include "common/cpu_caches.hpp"

namespace pydl {

struct GemmBlocking {
  int64_t mr = 0, nr = 0;   // the micro-kernel tile (per ISA and dtype)
  int64_t kc = 0, mc = 0, nc = 0;
  bool from_env = false;    // PYDL_GEMM_BLOCKING gave kc, mc, nc
};

// The model above for an MR x NR micro-kernel on elements of elem_size bytes and these caches.
GemmBlocking gemm_blocking_model(const CpuCaches& caches, int64_t mr, int64_t nr,
                                 int64_t elem_size);

// The blocking the driver uses: PYDL_GEMM_BLOCKING if set, else the model on cpu_caches().
GemmBlocking gemm_blocking(int64_t mr, int64_t nr, int64_t elem_size);

// Parses PYDL_GEMM_BLOCKING. Returns false when it is unset or empty; throws
// std::invalid_argument (message names the variable, the bad value and the expected form) when it
// is malformed or out of range. Called at import so a bad value fails there.
bool gemm_blocking_env(int64_t& kc, int64_t& mc, int64_t& nc);

}  // namespace pydl
