#include "common/cpu_caches.hpp"

#if defined(PYDL_X86)
#include <cpuid.h>
#endif

namespace pydl {
namespace {

CacheLevel make_level(int64_t size, int64_t ways, int64_t line, int64_t sharing) {
  CacheLevel c;
  c.size = size;
  c.ways = ways;
  c.line = line;
  c.sets = size / (ways * line);
  c.sharing = sharing;
  return c;
}

CpuCaches defaults() {
  CpuCaches c;
  c.l1d = make_level(32 << 10, 8, 64, 1);
  c.l2 = make_level(512 << 10, 8, 64, 1);
  c.l3 = make_level(2 << 20, 16, 64, 1);
  c.source = "default";
  return c;
}

#if defined(PYDL_X86)
// Walks the deterministic cache parameters leaf (same layout on Intel's leaf 4 and AMD's
// 0x8000001D): EAX[4:0] type (0 = no more caches, 1 = data, 3 = unified), EAX[7:5] level,
// EAX[25:14] sharing threads - 1, EBX[11:0] line - 1, EBX[21:12] partitions - 1,
// EBX[31:22] ways - 1, ECX sets - 1. Returns false if the leaf is missing or reports no L1d.
bool from_cpuid(CpuCaches& out) {
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
  const bool amd = b == 0x68747541u;  // "Auth"enticAMD
  unsigned leaf = 4;
  if (amd) {
    // AMD: 0x8000001D exists when CPUID 0x80000001 ECX bit 22 (TopologyExtensions) is set.
    if (!__get_cpuid(0x80000001u, &a, &b, &c, &d) || !(c & (1u << 22))) return false;
    leaf = 0x8000001Du;
  } else if (a < 4) {
    return false;
  }
  CpuCaches r = defaults();
  bool l1 = false, l2 = false, l3 = false;
  for (unsigned sub = 0; sub < 16; ++sub) {
    __cpuid_count(leaf, sub, a, b, c, d);
    const unsigned type = a & 0x1Fu;
    if (type == 0) break;
    if (type != 1 && type != 3) continue;  // instruction caches
    const int64_t level = (a >> 5) & 0x7u;
    const int64_t sharing = ((a >> 14) & 0xFFFu) + 1;
    const int64_t line = (b & 0xFFFu) + 1;
    const int64_t parts = ((b >> 12) & 0x3FFu) + 1;
    const int64_t ways = ((b >> 22) & 0x3FFu) + 1;
    const int64_t sets = static_cast<int64_t>(c) + 1;
    const CacheLevel lv = make_level(ways * parts * line * sets, ways * parts, line, sharing);
    if (level == 1) { r.l1d = lv; l1 = true; }
    if (level == 2) { r.l2 = lv; l2 = true; }
    if (level == 3) { r.l3 = lv; l3 = true; }
  }
  if (!l1) return false;
  if (!l2) r.l2 = r.l1d;  // no L2: the blocking model then keeps A where it can
  if (!l3) r.l3 = r.l2;
  r.source = "cpuid";
  out = r;
  return true;
}
#endif

CpuCaches detect() {
  CpuCaches c = defaults();
#if defined(PYDL_X86)
  from_cpuid(c);
#endif
  return c;
}

}  // namespace

const CpuCaches& cpu_caches() {
  static const CpuCaches caches = detect();
  return caches;
}

}  // namespace pydl
