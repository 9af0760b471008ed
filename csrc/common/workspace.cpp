#include "common/workspace.hpp"

#include <cstdlib>
#include <new>

namespace pydl {
namespace {

struct Slot {
  void* ptr = nullptr;
  size_t size = 0;
  ~Slot() { std::free(ptr); }
};

struct ThreadSlots {
  Slot slots[static_cast<int>(WorkspaceSlot::kCount)];
};

thread_local ThreadSlots t_slots;

}  // namespace

void* thread_workspace(WorkspaceSlot which, size_t bytes) {
  Slot& s = t_slots.slots[static_cast<int>(which)];
  if (bytes <= s.size && s.ptr) return s.ptr;
  // Grow geometrically so a slowly increasing size does not reallocate every call.
  size_t want = bytes + bytes / 4;
  want = (want + 63) & ~static_cast<size_t>(63);
  if (want < 4096) want = 4096;
  void* p = std::aligned_alloc(64, want);
  if (!p) throw std::bad_alloc();
  std::free(s.ptr);
  s.ptr = p;
  s.size = want;
  return p;
}

}  // namespace pydl
