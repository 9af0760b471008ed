// Thread pool shared by all kernels.
//
// One pool per process, created on first use, sized by set_num_threads()/PYDL_NUM_THREADS.
// Kernels split their work into independent tasks and never synchronise inside a job, which makes
// three guarantees cheap:
//  - results never depend on the thread count (a task's arithmetic does not depend on who runs it);
//  - several Python threads may call kernels at once: whoever finds the pool busy runs its tasks
//    itself instead of waiting;
//  - a forked child drops the parent's pool (its threads do not exist there) and lazily builds a
//    new one.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pydl {

int get_num_threads();
// n >= 1; values above the hardware concurrency are allowed (oversubscription is the caller's call).
void set_num_threads(int n);

// Calls fn(ctx, tid) for tid in [0, n_tasks) using up to get_num_threads() threads, the caller
// included, and returns when all calls have finished. Tasks must be independent. A parallel_run
// called from inside a task runs its tasks serially on that thread.
using TaskFn = void (*)(void* ctx, int64_t tid);
void parallel_run(int64_t n_tasks, TaskFn fn, void* ctx);

// Convenience wrapper for lambdas: parallel_for(n, [&](int64_t t) { ... }).
template <typename F>
void parallel_for(int64_t n_tasks, F&& f) {
  if (n_tasks <= 0) return;
  if (n_tasks == 1) {
    f(int64_t{0});
    return;
  }
  parallel_run(
      n_tasks, [](void* ctx, int64_t t) { (*static_cast<F*>(ctx))(t); },
      static_cast<void*>(&f));
}

// Splits [0, n) into contiguous chunks of at least `grain` elements (chunk starts are multiples
// of `align`) and calls f(begin, end) for each, in parallel when there is enough work.
// The chunking depends on the thread count: use it for element-wise maps only. A reduction that
// must give the same bits for any thread count splits into fixed-size blocks with parallel_for
// and combines the block results in block order.
template <typename F>
void parallel_chunks(int64_t n, int64_t grain, F&& f, int64_t align = 64) {
  if (n <= 0) return;
  int64_t nt = get_num_threads();
  int64_t max_chunks = n / (grain > 0 ? grain : 1);
  if (nt <= 1 || max_chunks <= 1) {
    f(int64_t{0}, n);
    return;
  }
  // A few chunks per thread rather than one: on a shared machine a thread that is descheduled
  // for a moment then holds up only a small chunk while the others take the rest.
  constexpr int64_t kChunksPerThread = 4;
  int64_t chunks = nt * kChunksPerThread < max_chunks ? nt * kChunksPerThread : max_chunks;
  int64_t per = (n + chunks - 1) / chunks;
  per = (per + align - 1) / align * align;
  int64_t n_chunks = (n + per - 1) / per;
  parallel_for(n_chunks, [&](int64_t c) {
    int64_t b = c * per;
    int64_t e = b + per < n ? b + per : n;
    f(b, e);
  });
}

}  // namespace pydl
