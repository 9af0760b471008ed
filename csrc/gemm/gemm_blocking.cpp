#include "gemm/gemm_blocking.hpp"

#include <cerrno>
#include <cstdlib>
#include <stdexcept>

namespace pydl {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

[[noreturn]] void bad_env(const std::string& value, const std::string& why) {
  throw std::invalid_argument("PYDL_GEMM_BLOCKING='" + value + "': " + why +
                              "; expected three positive integers 'kc,mc,nc' with kc in "
                              "[8, 8192], mc in [1, 65536], nc in [1, 1048576], or unset it to "
                              "use the blocking derived from the CPU caches");
}

}  // namespace

GemmBlocking gemm_blocking_model(const CpuCaches& caches, int64_t mr, int64_t nr,
                                 int64_t elem_size) {
  GemmBlocking b;
  b.mr = mr;
  b.nr = nr;
  const CacheLevel& l1 = caches.l1d;
  const CacheLevel& l2 = caches.l2;
  const CacheLevel& l3 = caches.l3;
  // KC: largest C_B with C_B + ceil(C_B * MR / NR) <= W1 - 1 (at least one way for B).
  int64_t cb = 1;
  while (cb + 1 + ceil_div((cb + 1) * mr, nr) <= l1.ways - 1) ++cb;
  const int64_t l1_way = l1.sets * l1.line;
  int64_t kc = cb * l1_way / (nr * elem_size);
  kc = clamp64(kc / 8 * 8, 32, 4096);  // multiples of 8 keep packing on its transpose path
  // MC: the ways of L2 left after one B micro-panel and one way for C.
  const int64_t l2_way = l2.sets * l2.line;
  const int64_t b_ways = ceil_div(kc * nr * elem_size, l2_way);
  const int64_t a_ways = l2.ways - 1 - b_ways > 1 ? l2.ways - 1 - b_ways : 1;
  int64_t mc = a_ways * l2_way / (kc * elem_size) / mr * mr;
  mc = clamp64(mc, mr, 65536 / mr * mr);
  // NC: this core's share of L3, minus two ways.
  const int64_t share = l3.size / (l3.sharing > 0 ? l3.sharing : 1);
  const int64_t usable = l3.ways > 2 ? share / l3.ways * (l3.ways - 2) : share / 2;
  int64_t nc = usable / (kc * elem_size) / nr * nr;
  nc = clamp64(nc, 4 * nr, 1048576 / nr * nr);
  b.kc = kc;
  b.mc = mc;
  b.nc = nc;
  return b;
}

bool gemm_blocking_env(int64_t& kc, int64_t& mc, int64_t& nc) {
  const char* env = std::getenv("PYDL_GEMM_BLOCKING");
  if (env == nullptr || *env == '\0') return false;
  const std::string value = env;
  int64_t v[3];
  const char* p = env;
  for (int i = 0; i < 3; ++i) {
    while (*p == ' ') ++p;
    if (*p < '0' || *p > '9') bad_env(value, "not three integers");
    char* end = nullptr;
    errno = 0;
    const long long x = std::strtoll(p, &end, 10);
    if (errno != 0) bad_env(value, "a number is out of range");
    v[i] = x;
    p = end;
    while (*p == ' ') ++p;
    if (i < 2) {
      if (*p != ',') bad_env(value, "not three comma-separated integers");
      ++p;
    }
  }
  if (*p != '\0') bad_env(value, "unexpected text after the third number");
  if (v[0] < 8 || v[0] > 8192) bad_env(value, "kc is out of range");
  if (v[1] < 1 || v[1] > 65536) bad_env(value, "mc is out of range");
  if (v[2] < 1 || v[2] > 1048576) bad_env(value, "nc is out of range");
  kc = v[0];
  mc = v[1];
  nc = v[2];
  return true;
}

GemmBlocking gemm_blocking(int64_t mr, int64_t nr, int64_t elem_size) {
  int64_t kc, mc, nc;
  if (gemm_blocking_env(kc, mc, nc)) {
    GemmBlocking b;
    b.mr = mr;
    b.nr = nr;
    b.kc = kc;
    b.mc = ceil_div(mc, mr) * mr;
    b.nc = ceil_div(nc, nr) * nr;
    b.from_env = true;
    return b;
  }
  return gemm_blocking_model(cpu_caches(), mr, nr, elem_size);
}

}  // namespace pydl
