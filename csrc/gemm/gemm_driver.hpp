// BLIS-style blocked GEMM driver, shared by gemm_avx2.cpp and gemm_avx512.cpp.
//
// C (m x n, row-major) = op(A) (m x k) @ op(B) (k x n), computed as
//   task grid over C (threads) -> jc (NC columns) -> pc (KC depth) -> pack B block
//     -> ic (MC rows) -> pack A block -> jr (NR panels) -> ir (MR panels) -> micro-kernel.
// The micro-kernel keeps an MR x NR tile of C in registers: it broadcasts one element of packed A
// per row and multiplies it with NR/lanes aligned vectors of packed B. Packing reads op(A) and
// op(B) through their strides, so a transpose is just a different packing loop, and zero-pads the
// last NR panel so the micro-kernel has no column edge case (partial tiles go through a local tile
// buffer). The row edge is handled by instantiating the micro-kernel for every row count 1..MR.
//
// Threads: C is cut into a grid of independent rectangles, one task each; a task runs the whole
// k loop for its rectangle with its own packing buffers, so tasks never wait on each other. Every
// element of C is summed in the same order (KC blocks depend only on k, products inside a block run
// p = 0..kc-1) whatever the grid, so results are bit-identical for any thread count.
//
// Shapes with m <= 8 first try the never-packing kernel of gemm_skinny.hpp.
//
// A traits struct K describes one ISA/dtype: K::T (element) and the micro-kernel tile MR x NR
// (NR a multiple of simd::Vec<T>::W). Vector code uses simd::Vec<T> of the including ISA; the
// cache blocks KC/MC/NC come from gemm_blocking() once per process (gemm_blocking.hpp).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "common/simd.hpp"
#include "common/workspace.hpp"
#include "gemm/gemm.hpp"
#include "gemm/gemm_epilogue.hpp"
#include "gemm/gemm_skinny.hpp"

namespace pydl {
namespace PYDL_ISA_NS {
namespace gemm_detail {

// The tile and cache blocks of K, computed once per process.
template <class K>
const GemmBlocking& blocking() {
  static const GemmBlocking b = gemm_blocking(K::MR, K::NR, sizeof(typename K::T));
  return b;
}

template <class K>
GemmBlocking blocking_copy() {
  return blocking<K>();
}

// B is read in place (not packed) when C has at most this many MR-row panels (see gemm_block).
constexpr int64_t kDirectBMaxPanels = 4;
// A is read in place when its rows are contiguous along k and C has at most this many NR-wide
// panels: packing A (a transpose) would then cost about as much as the multiply-adds it serves.
constexpr int64_t kDirectAMaxPanels = 4;

// Reading A in place touches MR rows lda apart at each k step. With a row stride of a multiple
// of 4 KiB they all fall in one L1 set (address bits 6-11), which holds 8 lines on the CPUs pydl
// targets: a taller tile (AVX-512's 14 rows) would evict its own rows between k steps, so such
// shapes pack A.
template <class K>
bool direct_a_fits(int64_t lda) {
  return K::MR <= 8 || (lda * static_cast<int64_t>(sizeof(typename K::T))) % 4096 != 0;
}

// 8x8 (float) / 4x4 (double) in-register transposes used when packing reads rows that are
// contiguous along k (A not transposed, B transposed): dst[q * ldd + r] = src[r * lds + q] for
// r < n, and 0 for n <= r < w (n <= w <= 8 / 4: the rows read, and the lanes stored, which may
// include the panel's zero padding). AVX2 shuffles are available in both ISA translation units
// that include this header.
inline void transpose_block(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t n,
                            int64_t w) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i) r[i] = i < n ? _mm256_loadu_ps(src + i * lds) : _mm256_setzero_ps();
  __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  const __m256 o[8] = {_mm256_permute2f128_ps(s0, s4, 0x20), _mm256_permute2f128_ps(s1, s5, 0x20),
                       _mm256_permute2f128_ps(s2, s6, 0x20), _mm256_permute2f128_ps(s3, s7, 0x20),
                       _mm256_permute2f128_ps(s0, s4, 0x31), _mm256_permute2f128_ps(s1, s5, 0x31),
                       _mm256_permute2f128_ps(s2, s6, 0x31), _mm256_permute2f128_ps(s3, s7, 0x31)};
  for (int q = 0; q < 8; ++q) simd::store_lanes(dst + q * ldd, o[q], w);
}

inline void transpose_block(const double* src, int64_t lds, double* dst, int64_t ldd, int64_t n,
                            int64_t w) {
  __m256d r[4];
  for (int i = 0; i < 4; ++i) r[i] = i < n ? _mm256_loadu_pd(src + i * lds) : _mm256_setzero_pd();
  __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
  __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
  const __m256d o[4] = {_mm256_permute2f128_pd(t0, t2, 0x20), _mm256_permute2f128_pd(t1, t3, 0x20),
                        _mm256_permute2f128_pd(t0, t2, 0x31), _mm256_permute2f128_pd(t1, t3, 0x31)};
  for (int q = 0; q < 4; ++q) simd::store_lanes(dst + q * ldd, o[q], w);
}

template <typename T>
constexpr int64_t kTransposeBlock = 32 / static_cast<int64_t>(sizeof(T));  // one __m256 row

// Packs `rows` (<= W) rows of a kc-long panel as dst[p * W + r] = src[r * s_r + p * s_p], p < kc,
// and zero-fills rows rows..W-1 so the micro-kernel can always compute a full tile.
template <typename T, int W>
void pack_panel(T* dst, const T* src, int64_t s_r, int64_t s_p, int64_t rows, int64_t kc) {
  if (s_r == 1) {
    // Each k step is a contiguous run: a plain copy. The runs are s_p apart (often a page or
    // more), too far for the hardware prefetcher: ask for the run 8 steps ahead.
    if (rows == W) {  // a full panel: whole vectors, then the first W % VW lanes of one more
      using V = simd::Vec<T>;
      constexpr int VW = V::W, full = W / VW * VW;
      for (int64_t p = 0; p < kc; ++p) {
        __builtin_prefetch(src + (p + 8) * s_p);
        __builtin_prefetch(src + (p + 8) * s_p + W - 1);
        const T* s = src + p * s_p;
        T* d = dst + p * W;
#pragma GCC unroll 4
        for (int r = 0; r < full; r += VW) simd::storeu(d + r, simd::loadu(s + r));
        if constexpr (full < W)
          simd::store_partial(d + full, simd::load_partial(s + full, W - full), W - full);
      }
      return;
    }
    for (int64_t p = 0; p < kc; ++p) {
      __builtin_prefetch(src + (p + 8) * s_p);
      __builtin_prefetch(src + (p + 8) * s_p + rows - 1);
      const T* s = src + p * s_p;
      T* d = dst + p * W;
      for (int64_t r = 0; r < rows; ++r) d[r] = s[r];
      for (int64_t r = rows; r < W; ++r) d[r] = T(0);
    }
    return;
  }
  int64_t p_done = 0;
  if (s_p == 1) {
    // Each row is contiguous along k: transpose it in register blocks of L rows x L steps; the
    // blocks' stores cover all W lanes, the zero padding included.
    constexpr int64_t L = kTransposeBlock<T>;
    p_done = kc / L * L;
    for (int64_t r0 = 0; r0 < W; r0 += L) {
      const int64_t n = rows - r0 < 0 ? 0 : min64(L, rows - r0), w = min64(L, W - r0);
      const T* s = src + r0 * s_r;
      for (int64_t p = 0; p < p_done; p += L)
        transpose_block(s + p, s_r, dst + p * W + r0, W, n, w);
    }
  }
  for (int64_t p = p_done; p < kc; ++p) {
    T* d = dst + p * W;
    for (int64_t r = 0; r < rows; ++r) d[r] = src[r * s_r + p * s_p];
    for (int64_t r = rows; r < W; ++r) d[r] = T(0);
  }
}

// An mc-row block is cut into micro-panels of at most MR rows by even_split (gemm_skinny.hpp):
// as few as possible, with row counts differing by at most one (m = 32 with MR = 14 gives 11, 11,
// 10 rather than 14, 14, 4, whose 4-row micro-kernel keeps few accumulators busy). Panel t holds
// rows(t) rows from start(t) and is packed MR wide (zero-padded) at t * MR * kc. Results do not
// depend on the cut: every element of C is still summed over p = 0..kc-1 in order.

// c (M x NR, row stride ldc) = [c +] a (M x kc) @ b (kc x NR, row stride ldb: NR when packed, or
// B's own row stride when read in place). a is packed (kc x MR: element (r, p) at a[p * MR + r])
// or, with kDirectA, read in place: element (r, p) at a[r * lda + p].
// noinline keeps each row-count instantiation a separate function with its own register plan.
template <class K, int M, bool kDirectA>
__attribute__((noinline)) void micro_kernel(int64_t kc, const typename K::T* __restrict a,
                                            int64_t lda, const typename K::T* __restrict b,
                                            int64_t ldb, typename K::T* __restrict c, int64_t ldc,
                                            bool load_c) {
  using T = typename K::T;
  using V = simd::Vec<T>;
  constexpr int NV = K::NR / V::W;
  static_assert(NV * V::W == K::NR, "NR must be a whole number of vectors");
  // Ask for the C tile now: its rows are ldc apart (in L3 or memory for a large C), and their
  // misses would otherwise stall the stores at the end, after the FMAs that could have hidden them.
#pragma GCC unroll 16
  for (int r = 0; r < M; ++r) {
    __builtin_prefetch(c + r * ldc, 1);
    __builtin_prefetch(c + r * ldc + K::NR - 1, 1);
  }
  V acc[M][NV];
#pragma GCC unroll 16
  for (int r = 0; r < M; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = simd::zero<V>();
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    V bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = simd::loadu(b + v * V::W);
#pragma GCC unroll 16
    for (int r = 0; r < M; ++r) {
      const V ar = simd::set1(kDirectA ? a[r * lda] : a[r]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = simd::fmadd(ar, bv[v], acc[r][v]);
    }
    a += kDirectA ? 1 : K::MR;
    b += ldb;
  }
#pragma GCC unroll 16
  for (int r = 0; r < M; ++r) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      T* cp = c + r * ldc + v * V::W;
      simd::storeu(cp, load_c ? simd::loadu(cp) + acc[r][v] : acc[r][v]);
    }
  }
}

// Runs the micro-kernel instantiated for exactly `rows` rows (1 <= rows <= M).
template <class K, int M, bool kDirectA>
inline void micro_kernel_rows(int64_t rows, int64_t kc, const typename K::T* a, int64_t lda,
                              const typename K::T* b, int64_t ldb, typename K::T* c, int64_t ldc,
                              bool load_c) {
  if constexpr (M > 1) {
    if (rows < M) {
      micro_kernel_rows<K, M - 1, kDirectA>(rows, kc, a, lda, b, ldb, c, ldc, load_c);
      return;
    }
  }
  micro_kernel<K, M, kDirectA>(kc, a, lda, b, ldb, c, ldc, load_c);
}

// The A operand of a macro-kernel: packed panels (pa), or op(A)'s block read in place (direct,
// rows lda apart, contiguous along k).
template <typename T>
struct APanels {
  const T* pa = nullptr;
  const T* direct = nullptr;
  int64_t lda = 0;
};

// Whether a task with `cols` columns of C reads A in place (the mirror image of reading B in
// place: with few columns of C, A's rows, contiguous along k, serve few micro-kernel calls).
template <class K>
bool reads_a_in_place(const GemmArgs<typename K::T>& g, int64_t cols) {
  return g.cs_a == 1 && cols <= kDirectAMaxPanels * K::NR && direct_a_fits<K>(g.rs_a);
}

// A's block of rows [ic, ic + mc) and depths [pc, pc + kc): in place, or packed into pa.
template <class K>
APanels<typename K::T> a_block(const GemmArgs<typename K::T>& g, bool in_place,
                               typename K::T* pa, int64_t ic, int64_t mc, int64_t pc,
                               int64_t kc) {
  APanels<typename K::T> A;
  if (in_place) {
    A.direct = g.a + ic * g.rs_a + pc;
    A.lda = g.rs_a;
    return A;
  }
  const EvenSplit panels = even_split(mc, K::MR);
  for (int64_t t = 0; t < panels.count; ++t)
    pack_panel<typename K::T, K::MR>(pa + t * K::MR * kc,
                                     g.a + (ic + panels.start(t)) * g.rs_a + pc * g.cs_a, g.rs_a,
                                     g.cs_a, panels.rows(t), kc);
  A.pa = pa;
  return A;
}

// C[ic:ic+mc, jc:jc+nc] (+)= A block (mc x kc) @ B block (kc x nc); on the last k block, each
// tile gets the epilogue while it is still in L1. The B block is packed in pb, except that when
// b_direct is given, full NR-wide panels are read in place from b_direct (row stride ldb).
template <class K>
void macro_kernel(const GemmArgs<typename K::T>& g, const APanels<typename K::T>& A,
                  const typename K::T* pb, const typename K::T* b_direct, int64_t ldb,
                  int64_t ic, int64_t mc, int64_t jc, int64_t nc, int64_t kc, bool load_c,
                  bool last) {
  using T = typename K::T;
  alignas(64) T tile[K::MR * K::NR];
  const bool epilogue = last && has_epilogue(g);
  const EvenSplit panels = even_split(mc, K::MR);
  const auto run = [&](int64_t t, int64_t rows, const T* b, int64_t ldb_panel, T* c, int64_t ldc,
                       bool load) {
    if (A.direct != nullptr) {
      micro_kernel_rows<K, K::MR, true>(rows, kc, A.direct + panels.start(t) * A.lda, A.lda, b,
                                        ldb_panel, c, ldc, load);
    } else {
      micro_kernel_rows<K, K::MR, false>(rows, kc, A.pa + t * K::MR * kc, 0, b, ldb_panel, c,
                                         ldc, load);
    }
  };
  for (int64_t jr = 0; jr < nc; jr += K::NR) {
    const int64_t nr = min64(K::NR, nc - jr);
    const bool in_place = b_direct != nullptr && nr == K::NR;
    const T* b = in_place ? b_direct + jr : pb + jr * kc;
    const int64_t ldb_panel = in_place ? ldb : K::NR;
    for (int64_t t = 0; t < panels.count; ++t) {
      const int64_t ir = panels.start(t), mr = panels.rows(t);
      T* c = g.c + (ic + ir) * g.ldc + jc + jr;
      if (nr == K::NR) {
        run(t, mr, b, ldb_panel, c, g.ldc, load_c);
      } else {
        run(t, mr, b, ldb_panel, tile, K::NR, false);
        using V = simd::Vec<T>;
        for (int64_t r = 0; r < mr; ++r) {
          T* cr = c + r * g.ldc;
          const T* tr = tile + r * K::NR;
          for (int64_t j = 0; j < nr; j += V::W) {
            const int64_t w = min64(V::W, nr - j);
            V v = simd::load(tr + j);
            if (load_c) v = simd::load_partial(cr + j, w) + v;
            simd::store_partial(cr + j, v, w);
          }
        }
      }
      if (epilogue) apply_epilogue(g, c, g.ldc, mr, jc + jr, nr);
    }
  }
}

// The whole GEMM restricted to C[i0:i1, j0:j1], single-threaded, with this thread's buffers.
//
// Two loop orders, the same micro-kernel calls on the same packed values (so the same bits):
//  - rows of C in one MC block (a training or inference batch): A's block is packed once per KC
//    block, then each NR-wide panel of B is packed right before the micro-kernel runs every row
//    panel against it. The packed panel (NR x KC) stays in L1 and B's source rows are read once,
//    from wherever they are; packing the whole KC x NC block first would write it out (a 256 x
//    256 float W: 256 KB) and read it back from L2 or L3, which cost a 32 x 256 x 256 product as
//    much time as its multiply-adds.
//  - more rows: BLIS's order, the KC x NC block of B packed once and reused by every MC block.
template <class K>
void gemm_block(const GemmArgs<typename K::T>& g, const GemmBlocking& bl, int64_t kc_block,
                int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  using T = typename K::T;
  const int64_t NC = bl.nc, MC = bl.mc;
  const bool one_row_block = i1 - i0 <= MC;
  const int64_t nc_max = one_row_block ? K::NR : round_up(min64(NC, j1 - j0), K::NR);
  const int64_t mc_max = round_up(min64(MC, i1 - i0), K::MR);
  T* pa = static_cast<T*>(thread_workspace(WorkspaceSlot::kPackA, mc_max * kc_block * sizeof(T)));
  T* pb = static_cast<T*>(thread_workspace(WorkspaceSlot::kPackB, nc_max * kc_block * sizeof(T)));
  // With few rows of C, each B element is used by only a few micro-kernel calls, so copying B
  // into panels costs about as much as the multiply-adds (m = 32: W of 512 x 784 takes ~60 us to
  // pack, the product ~115 us). When B's rows are contiguous (a plain, not transposed, B) its
  // full panels are then read in place instead; the arithmetic, and so the result, is the same.
  const bool direct_b = g.cs_b == 1 && g.m <= kDirectBMaxPanels * K::MR;
  const bool direct_a = reads_a_in_place<K>(g, j1 - j0);
  const auto pack_a = [&](int64_t ic, int64_t mc, int64_t pc, int64_t kc) {
    return a_block<K>(g, direct_a, pa, ic, mc, pc, kc);
  };
  for (int64_t jc = j0; jc < j1; jc += NC) {
    const int64_t nc = min64(NC, j1 - jc);
    for (int64_t pc = 0; pc < g.k; pc += kc_block) {
      const int64_t kc = min64(kc_block, g.k - pc);
      const bool load_c = g.accumulate || pc > 0;
      const bool last = pc + kc == g.k;
      const T* b_block = g.b + pc * g.rs_b + jc * g.cs_b;
      if (one_row_block) {
        const APanels<T> A = pack_a(i0, i1 - i0, pc, kc);
        for (int64_t jr = 0; jr < nc; jr += K::NR) {
          const int64_t nr = min64(K::NR, nc - jr);
          const bool in_place = direct_b && nr == K::NR;
          if (!in_place) pack_panel<T, K::NR>(pb, b_block + jr * g.cs_b, g.cs_b, g.rs_b, nr, kc);
          macro_kernel<K>(g, A, pb, in_place ? b_block + jr : nullptr, g.rs_b, i0, i1 - i0,
                          jc + jr, nr, kc, load_c, last);
        }
        continue;
      }
      for (int64_t jr = 0; jr < nc; jr += K::NR) {
        if (direct_b && nc - jr >= K::NR) continue;  // read in place by the micro-kernel
        pack_panel<T, K::NR>(pb + jr * kc, b_block + jr * g.cs_b, g.cs_b, g.rs_b,
                             min64(K::NR, nc - jr), kc);
      }
      for (int64_t ic = i0; ic < i1; ic += MC) {
        const int64_t mc = min64(MC, i1 - ic);
        macro_kernel<K>(g, pack_a(ic, mc, pc, kc), pb, direct_b ? b_block : nullptr, g.rs_b, ic,
                        mc, jc, nc, kc, load_c, last);
      }
    }
  }
}

// How C is cut into tasks: mt x nt rectangles of mb x nb (multiples of MR x NR).
struct Grid {
  int64_t mt = 1, nt = 1, mb = 0, nb = 0;
};

// For the products gemm_shared_b does not take (few rows, or one thread).
// Uses up to get_num_threads() tasks, fewer when each would get too little work, and among the
// mt x nt factorisations picks the one with the smallest rectangle perimeter mb + nb: that is the
// least packing per task (A rows + B columns) and the squarest blocks. A small m (an MLP batch)
// therefore splits over n.
template <class K>
Grid plan_grid(int64_t m, int64_t n, int64_t k) {
  Grid best;
  best.mb = m;
  best.nb = n;
  const int64_t tasks = task_count(m, n, k, int64_t{1} << 30);
  if (tasks <= 1) return best;
  int64_t best_cost = -1;
  for (int64_t mt = 1; mt <= tasks; ++mt) {
    if (tasks % mt != 0) continue;
    const int64_t nt = tasks / mt;
    const int64_t mb = round_up(ceil_div(m, mt), K::MR);
    const int64_t nb = round_up(ceil_div(n, nt), K::NR);
    if ((mt - 1) * mb >= m || (nt - 1) * nb >= n) continue;  // would leave a task empty
    if (best_cost < 0 || mb + nb < best_cost) {
      best_cost = mb + nb;
      best.mt = mt;
      best.nt = nt;
      best.mb = mb;
      best.nb = nb;
    }
  }
  return best;
}

// Threads, large m: B packed once and shared, C split by rows (BLIS's ic loop in parallel).
//
// Why not the grid of gemm_block tasks here: cutting C into one rectangle per thread makes every
// thread pack all of A when the cut is along n (or all of B when along m), and each thread keeps
// its own KC x NC block of B in the shared L3, so two threads move almost the packing traffic of
// two whole products and halve each other's L3. Here op(B)[:, jc:jc+nc] is packed once, for the
// whole k, by all threads (one parallel pass over its NR-wide panels), then the rows of C are cut
// into blocks of at most MC rows, a multiple of the thread count of them, which threads claim
// one by one: each packs only its own rows of A (into its L2) and runs the k loop against the
// shared B. Two pool hand-offs per NC block of columns (usually one block), nothing shared is
// written twice, and a thread that is slowed down (a busy machine) leaves its remaining row
// blocks to the others. Every element of C still gets the same micro-kernel arithmetic over the
// same KC blocks, so results are bit-identical to the grid path and to any thread count.
template <class K>
void gemm_shared_b(const GemmArgs<typename K::T>& g, const GemmBlocking& bl, int64_t kc_block,
                   int64_t tasks) {
  using T = typename K::T;
  const int64_t n_pc = ceil_div(g.k, kc_block);
  // The packed k x nc block is shared by `tasks` cores: give it their L3 shares (the model's
  // KC x NC block each), so it stays in L3 while every row block streams over it.
  int64_t nc_max = bl.nc * bl.kc * tasks / g.k / K::NR * K::NR;
  if (nc_max < 4 * K::NR) nc_max = 4 * K::NR;
  nc_max = min64(nc_max, round_up(g.n, K::NR));
  T* pb = static_cast<T*>(
      thread_workspace(WorkspaceSlot::kPackB, static_cast<size_t>(n_pc * kc_block * nc_max) * sizeof(T)));
  const bool direct_a = reads_a_in_place<K>(g, g.n);
  // Row blocks: at least one per thread, a multiple of the thread count, at most MC rows each.
  int64_t n_ic = round_up(ceil_div(g.m, bl.mc), tasks);
  const EvenSplit ic_split = even_split(ceil_div(g.m, K::MR), ceil_div(ceil_div(g.m, K::MR), n_ic));
  for (int64_t jc = 0; jc < g.n; jc += nc_max) {
    const int64_t nc = min64(nc_max, g.n - jc);
    const int64_t n_jr = ceil_div(nc, K::NR);
    // Pack: panel (pc, jr) at pb + pc * kc_block * nc_max + jr * NR * kc (kc of that block).
    const EvenSplit pack_split = even_split(n_pc * n_jr, ceil_div(n_pc * n_jr, tasks));
    parallel_for(pack_split.count, [&](int64_t t) {
      const int64_t u0 = pack_split.start(t), u1 = u0 + pack_split.rows(t);
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t ip = u / n_jr, jr = (u % n_jr) * K::NR, pc = ip * kc_block;
        const int64_t kc = min64(kc_block, g.k - pc);
        pack_panel<T, K::NR>(pb + ip * kc_block * nc_max + jr * kc,
                             g.b + pc * g.rs_b + (jc + jr) * g.cs_b, g.cs_b, g.rs_b,
                             min64(K::NR, nc - jr), kc);
      }
    });
    parallel_for(ic_split.count, [&](int64_t t) {
      const int64_t ic = ic_split.start(t) * K::MR;
      const int64_t mc = min64(ic_split.rows(t) * K::MR, g.m - ic);
      if (mc <= 0) return;
      T* pa = direct_a ? nullptr
                       : static_cast<T*>(thread_workspace(
                             WorkspaceSlot::kPackA,
                             static_cast<size_t>(round_up(mc, K::MR) * kc_block) * sizeof(T)));
      for (int64_t ip = 0; ip < n_pc; ++ip) {
        const int64_t pc = ip * kc_block, kc = min64(kc_block, g.k - pc);
        macro_kernel<K>(g, a_block<K>(g, direct_a, pa, ic, mc, pc, kc), pb + ip * kc_block * nc_max, nullptr, 0, ic, mc, jc, nc, kc,
                        g.accumulate || pc > 0, pc + kc == g.k);
      }
    });
  }
}

// The share of a micro-kernel's multiply-adds that land in C when m x n is cut into MR x NR
// tiles (rows split evenly into panels of at most MR, columns padded to NR).
template <class K>
double tile_efficiency(int64_t m, int64_t n) {
  const double rows = static_cast<double>(m) / static_cast<double>(ceil_div(m, K::MR) * K::MR);
  const double cols = static_cast<double>(n) / static_cast<double>(round_up(n, K::NR));
  return rows * cols;
}

template <class K>
void gemm_as_given(const GemmArgs<typename K::T>& g);

// Some products are computed as C.T = op(B).T @ op(A).T into a buffer, copied into C transposed,
// the epilogue after:
//  - narrow: fewer columns than a few micro-panels (a 10-class head: 10 of 16 columns computed
//    for nothing) and many rows, when the transposed tiles are filled >= 10% better (10 rows: two
//    5-row panels);
//  - short: a few rows (above the never-packing kernel's, at most 4 NR: 64 for AVX2 floats)
//    against a B whose columns run along k (x @ W.T at batch 32): packing B would transpose all of
//    W for those few rows, while the transposed product reads W in place as its A (gemm_block's
//    direct A) and packs only x.
// Every element is the same FMA chain over the same KC blocks (the product of two floats does
// not depend on their order), so the bits are those of the direct product. Not when
// accumulating into C (its old value would be added last instead of first).
template <class K>
bool transposed_gemm(const GemmArgs<typename K::T>& g) {
  using T = typename K::T;
  if (g.accumulate) return false;
  const bool narrow = g.n < 4 * K::NR && g.m >= 2 * K::NR &&
                      tile_efficiency<K>(g.n, g.m) >= 1.1 * tile_efficiency<K>(g.m, g.n);
  const bool short_rows = g.m > kSkinnyMaxM && g.m <= kDirectAMaxPanels * K::NR &&
                          g.n > kDirectAMaxPanels * K::NR && g.rs_b == 1 && g.cs_b != 1 &&
                          g.k >= 2 * g.m &&  // the n x k pack saved >= twice the m x n copy added
                          tile_efficiency<K>(g.n, g.m) >= 0.95 * tile_efficiency<K>(g.m, g.n) &&
                          direct_a_fits<K>(g.cs_b);  // B's row stride: the transposed A's
  if (!narrow && !short_rows) return false;
  T* t = static_cast<T*>(thread_workspace(WorkspaceSlot::kTransposedC,
                                          static_cast<size_t>(g.m * g.n) * sizeof(T)));
  GemmArgs<T> h;
  h.m = g.n;
  h.n = g.m;
  h.k = g.k;
  h.a = g.b;  // op(B).T: element (j, p) is op(B)'s (p, j)
  h.rs_a = g.cs_b;
  h.cs_a = g.rs_b;
  h.b = g.a;  // op(A).T: element (p, i) is op(A)'s (i, p)
  h.rs_b = g.cs_a;
  h.cs_b = g.rs_a;
  h.c = t;
  h.ldc = g.m;
  h.act_fns = g.act_fns;
  gemm_as_given<K>(h);
  // C[i, j] = t[j, i], in L x L register transposes (t's rows are g.m long: one element per
  // column read would stride a whole row); the last m % L rows of C one element at a time.
  constexpr int64_t L = kTransposeBlock<T>;
  const int64_t m_blocks = g.m / L * L;
  for (int64_t j0 = 0; j0 < g.n; j0 += L) {
    const int64_t w = min64(L, g.n - j0);
    for (int64_t i0 = 0; i0 < m_blocks; i0 += L)
      transpose_block(t + j0 * g.m + i0, g.m, g.c + i0 * g.ldc + j0, g.ldc, w, w);
  }
  for (int64_t i = m_blocks; i < g.m; ++i) {
    T* row = g.c + i * g.ldc;
    for (int64_t j = 0; j < g.n; ++j) row[j] = t[j * g.m + i];
  }
  if (has_epilogue(g)) apply_epilogue(g, g.c, g.ldc, g.m, 0, g.n);
  return true;
}

template <class K>
void gemm(const GemmArgs<typename K::T>& g) {
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0) {
    gemm_empty_k(g);
    return;
  }
  if (transposed_gemm<K>(g)) return;
  gemm_as_given<K>(g);
}

// gemm for m, n, k > 0, computed in the orientation given.
template <class K>
void gemm_as_given(const GemmArgs<typename K::T>& g) {
  const GemmBlocking& bl = blocking<K>();
  // Near-equal KC blocks (k = 784 with KC = 320 -> 264, 264, 256 rather than 320, 320, 144) so no
  // block is a short, slow one; multiples of 8 keep packing on its transpose fast path.
  const int64_t kc_block = round_up(ceil_div(g.k, ceil_div(g.k, bl.kc)), 8);
  if (skinny_gemm(g, kc_block)) return;
  const int64_t tasks = task_count(g.m, g.n, g.k, int64_t{1} << 30);
  // Rows enough for every thread to get row blocks of at least 4 micro-panels: share B.
  if (tasks > 1 && g.m >= tasks * 4 * K::MR) {
    gemm_shared_b<K>(g, bl, kc_block, tasks);
    return;
  }
  const Grid grid = plan_grid<K>(g.m, g.n, g.k);
  parallel_for(grid.mt * grid.nt, [&](int64_t t) {
    const int64_t i0 = (t / grid.nt) * grid.mb, j0 = (t % grid.nt) * grid.nb;
    gemm_block<K>(g, bl, kc_block, i0, min64(g.m, i0 + grid.mb), j0, min64(g.n, j0 + grid.nb));
  });
}

// The table entries of one ISA: C = op(A) @ op(B) for float (tile SMR x SNR) and double.
template <class KS, class KD>
void fill_gemm_table(GemmTable& t) {
  t.sgemm = &gemm<KS>;
  t.dgemm = &gemm<KD>;
  t.sblocking = &blocking_copy<KS>;
  t.dblocking = &blocking_copy<KD>;
}

}  // namespace gemm_detail
}  // namespace PYDL_ISA_NS
}  // namespace pydl
