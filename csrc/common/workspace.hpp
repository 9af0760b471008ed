// Per-thread scratch memory for kernels (GEMM packing buffers and the like).
//
// Each thread owns a few grow-only, 64-byte-aligned slots, so a kernel called repeatedly with the
// same shapes allocates nothing after its first call, and threads never share scratch memory.
#pragma once

#include <cstddef>

namespace pydl {

enum class WorkspaceSlot : int {
  kPackA = 0,
  kPackB = 1,
  kScratch = 2,
  kPadded = 3,
  kTransposedC = 4,  // gemm_detail::transposed_gemm's C.T
  kCount = 5
};

// Returns at least `bytes` bytes of 64-byte-aligned memory private to the calling thread, valid
// until the next call with the same slot on this thread. Throws std::bad_alloc on failure.
void* thread_workspace(WorkspaceSlot slot, size_t bytes);

}  // namespace pydl
