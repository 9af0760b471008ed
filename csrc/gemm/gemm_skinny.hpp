// Never-packing GEMM kernel for few rows, tried by the blocked driver (gemm_driver.hpp) before it
// packs anything: m <= kSkinnyMaxM rows (batch-1..8: y = x @ W.T, dx = dy @ W), where packing B
// costs as much as the multiply-adds because each B element is used by at most 8 rows.
// One row kernel for both ways op(B) can be read in place: along n (cs_b == 1, a plain B: one
// vector load per k step) or along k (rs_b == 1, a linear layer's W in x @ W.T: 128-bit chunks of
// W / kChunk rows per load, turned into one vector of columns per k step by in-register
// transposes). Either way C[i, j0:j0+cw] accumulates A[i, p] * op(B)[p, j0:j0+cw] for R rows at
// once, in vectors of columns (the last masked), in the blocked driver's KC blocks, p in order, so
// every element gets exactly the bits the packed path gives it: results do not depend on the
// layout of the operands (other layouts take the packed path, with the same bits), on the number
// of rows, or on the thread split. A dot-product kernel over contiguous k (sums of vectors along
// k, reduced at the end) would save the transposes, but it sums in another order, which would make
// a product's bits depend on its operands' strides; it is not used.
//
// Few columns (a 10-class head, n <= 16) with many rows used to come here too; since the packed
// path streams B's panels through L1 it is faster for them (Zen 3, 1 thread: 512 x 256 -> 10
// x @ W.T 0.57x -> 0.8x numpy, 512 x 256 -> 16 0.61x -> 0.96x), although the micro-kernel then
// computes 16 columns for 10.
//
// The epilogue runs on each task's finished region.
#pragma once

#include <cstdint>

#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "common/simd.hpp"
#include "common/workspace.hpp"
#include "gemm/gemm.hpp"
#include "gemm/gemm_epilogue.hpp"

namespace pydl {
namespace PYDL_ISA_NS {
namespace gemm_detail {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Below this many multiply-adds per thread (~10 us on one core), a second thread costs more than it
// saves. The hand-off alone is a few microseconds on an idle machine, but on a busy one the worker
// may be descheduled while the caller waits for its task: measured on a loaded 2-core machine, 2^17
// made a batch-32 MLP step (32x256x256 GEMMs) 2x slower with 2 threads than with 1; with 2^21 a
// GEMM splits only when each thread gets enough work to absorb that (e.g. 32x784x512 does).
constexpr int64_t kMinMacsPerThread = int64_t{1} << 21;

constexpr int64_t kSkinnyMaxM = 8;

// [0, n) cut into as few parts of at most max_part as possible, sizes differing by at most one.
struct EvenSplit {
  int64_t count = 0, base = 0, extra = 0;  // the first `extra` parts have base + 1 elements
  int64_t start(int64_t t) const { return t * base + min64(t, extra); }
  int64_t rows(int64_t t) const { return base + (t < extra ? 1 : 0); }
};

inline EvenSplit even_split(int64_t n, int64_t max_part) {
  EvenSplit s;
  s.count = ceil_div(n, max_part);
  s.base = n / s.count;
  s.extra = n % s.count;
  return s;
}

// How many tasks a product of `macs` multiply-adds gets: up to the thread count, at least
// kMinMacsPerThread each, at most `units`.
inline int64_t task_count(int64_t m, int64_t n, int64_t k, int64_t units) {
  const double macs = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  int64_t tasks = get_num_threads();
  if (macs / static_cast<double>(kMinMacsPerThread) < static_cast<double>(tasks))
    tasks = static_cast<int64_t>(macs / static_cast<double>(kMinMacsPerThread));
  if (tasks > units) tasks = units;
  return tasks < 1 ? 1 : tasks;
}

// Registers: AVX2 has 16 vector registers, AVX-512 32.
template <typename T>
constexpr int kVecRegs = simd::Vec<T>::W * static_cast<int>(sizeof(T)) == 64 ? 32 : 16;

// ---- row kernel -------------------------------------------------------------------------------

// Rows per kernel call: a plain B costs one load per k step and vector whatever the rows, so 4
// rows with twice the vectors are as good as 8; a transposed B costs shuffles per k step and
// vector, which 8 rows share.
template <bool kTransB>
constexpr int kRowMaxRows = kTransB ? 8 : 4;
// Vectors per row for an R-row block. A plain B: about half the registers as accumulators. A
// transposed one: a quarter, and at most 2 vectors (16 rows of W for AVX2 floats), because each
// vector reads W rows of W side by side, 16 bytes at a time, and with a row stride of a multiple
// of 1 KiB (k = 256, 512, ...) those rows share a few L1 sets (4 for 1 KiB, 2 for 2 KiB): with 4
// vectors (32 rows) a line was evicted between two of its 16-byte reads. Measured on Zen 3 (1
// thread, against 4 vectors): 1 x 512 x 784 2.2x faster, 8 x 256 x 256 1.2-1.4x, 1 x 256 x 256
// about the same (2 chains per row then bound by the multiply-add latency instead).
template <typename T, bool kTransB = false>
constexpr int row_vecs(int r) {
  constexpr int regs = kVecRegs<T> / (kTransB ? 4 : 2);
  constexpr int wide = 32 / simd::Vec<T>::W;
  constexpr int most = kTransB ? (wide < 2 ? wide : 2) : 8;
  return regs / r > most ? most : (regs / r < 1 ? 1 : regs / r);
}

// x[l] = op(B)[p + l, j .. j + W) for l < kChunk, read from b = &op(B)[p, j], for the next kChunk
// k steps of one vector of W columns. A plain B (kTransB false: op(B)[p, j] = b[p * ld + j]) gives
// one load per step; a transposed one (op(B)[p, j] = b[p + j * ld], W's rows contiguous along k)
// gives W / kChunk-row chunk loads and an in-register transpose (simd.hpp, kChunk). kPartial: only
// `steps` (<= kChunk) steps and `cols` (<= W) columns exist; nothing past them is read and the
// missing lanes hold 0 (steps past `steps` hold anything and must not be used).
template <bool kTransB, bool kPartial, typename T>
inline void load_b_steps(simd::Vec<T> (&x)[simd::kChunk<T>], const T* b, int64_t ld,
                         int64_t steps, int64_t cols) {
  constexpr int S = simd::kChunk<T>;
  if constexpr (kTransB) {
#pragma GCC unroll 4
    for (int i = 0; i < S; ++i) {
      if constexpr (kPartial) {
        // Chunk q of x[i] is column i + q * S: the first ceil((cols - i) / S) chunks exist.
        const int64_t nq = cols > i ? (cols - i + S - 1) / S : 0;
        x[i] = simd::load_chunks_partial(b + i * ld, S * ld, nq, steps);
      } else {
        x[i] = simd::load_chunks(b + i * ld, S * ld);
      }
    }
    simd::transpose_chunks(x);
  } else {
#pragma GCC unroll 4
    for (int l = 0; l < S; ++l) {
      if constexpr (kPartial) {
        x[l] = l < steps ? simd::load_partial(b + l * ld, cols) : simd::zero<simd::Vec<T>>();
      } else {
        x[l] = simd::loadu(b + l * ld);
      }
    }
  }
}

// One group of kChunk steps (from p, `steps` of them when kPartial) of vector v of the row kernel:
// acc[r][v] += a[r, p + l] * op(B)[p + l, v * W + ..] for l in order.
template <typename T, bool kTransB, bool kPartial, int R, int NV>
__attribute__((always_inline)) inline void row_steps(simd::Vec<T> (&acc)[R][NV], int v,
                                                     const T* ap, int64_t rs_a, int64_t cs_a,
                                                     const T* bp, int64_t ld, int64_t steps,
                                                     int64_t cols) {
  constexpr int S = simd::kChunk<T>;
  simd::Vec<T> x[S];
  load_b_steps<kTransB, kPartial>(x, bp, ld, steps, cols);
#pragma GCC unroll 4
  for (int l = 0; l < (kPartial ? steps : S); ++l)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
      acc[r][v] = simd::fmadd(simd::set1(ap[r * rs_a + l * cs_a]), x[l], acc[r][v]);
}

// c[r * ldc + j] (+)= sum_p a[r * rs_a + p * cs_a] * op(B)[p, j] for r < R and
// j < (NV - 1) * W + tail; the last vector has `tail` lanes (all W unless kTail). op(B) is read
// from b as load_b_steps says. The sum runs in the blocked driver's KC blocks: each block's
// products are summed from zero, p in order, and added to C (C + block), so every element gets
// the very bits the packed micro-kernel gives it, whichever way B is read. The NV * R accumulator
// chains are independent, so the out-of-order core overlaps one vector's loads and shuffles with
// another's multiply-adds.
template <typename T, bool kTransB, int R, int NV, bool kTail>
__attribute__((noinline)) void row_kernel(int64_t k, int64_t kcb, const T* __restrict a,
                                          int64_t rs_a, int64_t cs_a, const T* __restrict b,
                                          int64_t ld, T* __restrict c, int64_t ldc, int64_t tail,
                                          bool accumulate) {
  using V = simd::Vec<T>;
  constexpr int W = V::W;
  constexpr int S = simd::kChunk<T>;
  // op(B)[p, j] = b[p * step + j * col].
  const int64_t step = kTransB ? 1 : ld, col = kTransB ? ld : 1;
  for (int64_t pc = 0; pc < k; pc += kcb) {
    const int64_t pe = min64(k, pc + kcb);
    V acc[R][NV];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = simd::zero<V>();
    int64_t p = pc;
    const T* ap = a + p * cs_a;
    const T* bp = b + p * step;
    for (; p + S <= pe; p += S, ap += S * cs_a, bp += S * step) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        if (kTail && v == NV - 1) {
          row_steps<T, kTransB, true>(acc, v, ap, rs_a, cs_a, bp + v * W * col, ld, S, tail);
        } else {
          row_steps<T, kTransB, false>(acc, v, ap, rs_a, cs_a, bp + v * W * col, ld, S, W);
        }
      }
    }
    if (p < pe) {  // the last k steps, fewer than kChunk (k itself not a multiple)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v)
        row_steps<T, kTransB, true>(acc, v, ap, rs_a, cs_a, bp + v * W * col, ld, pe - p,
                                    kTail && v == NV - 1 ? tail : W);
    }
    const bool load_c = accumulate || pc > 0;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        T* cp = c + r * ldc + v * W;
        if (kTail && v == NV - 1) {
          simd::store_partial(cp, load_c ? simd::load_partial(cp, tail) + acc[r][v] : acc[r][v],
                              tail);
        } else {
          simd::storeu(cp, load_c ? simd::loadu(cp) + acc[r][v] : acc[r][v]);
        }
      }
    }
  }
}

// Runs row_kernel for exactly `rows` rows (1 <= rows <= R) and nv vectors (1 <= nv <= NV).
template <typename T, bool kTransB, int R, int NV>
void row_kernel_for(int64_t rows, int64_t nv, int64_t tail, int64_t k, int64_t kcb, const T* a,
                    int64_t rs_a, int64_t cs_a, const T* b, int64_t ld, T* c, int64_t ldc,
                    bool accumulate) {
  if constexpr (R > 1) {
    if (rows < R) {
      row_kernel_for<T, kTransB, R - 1, row_vecs<T, kTransB>(R - 1)>(rows, nv, tail, k, kcb, a, rs_a, cs_a,
                                                            b, ld, c, ldc, accumulate);
      return;
    }
  }
  if constexpr (NV > 1) {
    if (nv < NV) {
      row_kernel_for<T, kTransB, R, NV - 1>(rows, nv, tail, k, kcb, a, rs_a, cs_a, b, ld, c, ldc,
                                            accumulate);
      return;
    }
  }
  if (tail == simd::Vec<T>::W) {
    row_kernel<T, kTransB, R, NV, false>(k, kcb, a, rs_a, cs_a, b, ld, c, ldc, tail, accumulate);
  } else {
    row_kernel<T, kTransB, R, NV, true>(k, kcb, a, rs_a, cs_a, b, ld, c, ldc, tail, accumulate);
  }
}

// C[i0:i1, j0:j1] by row blocks: column chunks outer (each chunk of B is then read from cache by
// the later row groups), row groups inner.
template <typename T, bool kTransB>
void row_region(const GemmArgs<T>& g, int64_t kcb, int64_t i0, int64_t i1, int64_t j0,
                int64_t j1) {
  constexpr int W = simd::Vec<T>::W;
  constexpr int kMaxRows = kRowMaxRows<kTransB>;
  const EvenSplit rs = even_split(i1 - i0, kMaxRows);
  const int64_t chunk =
      static_cast<int64_t>(row_vecs<T, kTransB>(static_cast<int>(rs.base + (rs.extra > 0)))) * W;
  const int64_t ld = kTransB ? g.cs_b : g.rs_b;
  for (int64_t j = j0; j < j1; j += chunk) {
    const int64_t cols = min64(chunk, j1 - j);
    const int64_t nv = ceil_div(cols, W), tail = cols - (nv - 1) * W;
    const T* b = g.b + j * (kTransB ? g.cs_b : 1);
    for (int64_t t = 0; t < rs.count; ++t) {
      const int64_t i = i0 + rs.start(t);
      row_kernel_for<T, kTransB, kMaxRows, row_vecs<T, kTransB>(kMaxRows)>(
          rs.rows(t), nv, tail, g.k, kcb, g.a + i * g.rs_a, g.rs_a, g.cs_a, b, ld,
          g.c + i * g.ldc + j, g.ldc, g.accumulate);
    }
  }
}

// ---- entry ------------------------------------------------------------------------------------

// Computes C with the few-row kernel and returns true, or returns false (nothing written) when the
// shape or layout is not one for it. Requires m, n, k > 0; kcb is the blocked driver's KC block.
template <typename T>
bool skinny_gemm(const GemmArgs<T>& g, int64_t kcb) {
  if (g.m > kSkinnyMaxM) return false;
  // op(B) read along n (a plain B), or along k (x @ W.T: W's rows contiguous).
  const bool trans_b = g.cs_b != 1;
  if (trans_b && g.rs_b != 1) return false;
  // Tasks split the columns.
  const int64_t tasks = task_count(g.m, g.n, g.k, ceil_div(g.n, 8));
  const EvenSplit parts = even_split(g.n, ceil_div(g.n, tasks));
  parallel_for(parts.count, [&](int64_t t) {
    const int64_t j0 = parts.start(t), j1 = j0 + parts.rows(t);
    if (trans_b) {
      row_region<T, true>(g, kcb, 0, g.m, j0, j1);
    } else {
      row_region<T, false>(g, kcb, 0, g.m, j0, j1);
    }
    if (has_epilogue(g)) apply_epilogue(g, g.c + j0, g.ldc, g.m, j0, j1 - j0);
  });
  return true;
}

}  // namespace gemm_detail
}  // namespace PYDL_ISA_NS
}  // namespace pydl
