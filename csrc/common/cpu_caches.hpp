// Data-cache geometry of the CPU pydl runs on, read once from CPUID (leaf 4 on Intel,
// 0x8000001D on AMD) for the GEMM blocking model (gemm/gemm_blocking.hpp).
#pragma once

#include <cstdint>

namespace pydl {

struct CacheLevel {
  int64_t size = 0;     // bytes
  int64_t ways = 0;     // associativity (a fully associative cache reports its line count)
  int64_t line = 0;     // bytes per line
  int64_t sets = 0;     // size / (ways * line)
  int64_t sharing = 1;  // logical processors sharing this cache
};

struct CpuCaches {
  CacheLevel l1d, l2, l3;
  // "cpuid", or "default" when CPUID has no cache leaf (non-x86 build, old CPU, or a hypervisor
  // hiding it): then 32 KiB 8-way L1d, 512 KiB 8-way L2 and a 2 MiB-per-core 16-way L3 are assumed.
  const char* source = "default";
};

// Detected on first call; later calls return the same object.
const CpuCaches& cpu_caches();

}  // namespace pydl
