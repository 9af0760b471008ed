#include "common/parallel.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define PYDL_PAUSE() _mm_pause()
#else
#define PYDL_PAUSE() ((void)0)
#endif

namespace pydl {
namespace {

int default_threads() {
  if (const char* env = std::getenv("PYDL_NUM_THREADS")) {
    char* end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && v >= 1 && v <= 1024) return static_cast<int>(v);
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

std::atomic<int> g_num_threads{0};  // 0 = not yet read from the environment

// After a job a worker waits for the next one in three stages:
//  1. kSpinIterations pause-iterations (~25 us: a pause is ~25 ns): back-to-back kernel calls
//     (a few microseconds apart) start at once;
//  2. until kYieldWindow has passed since the job, it polls and yields the core between polls:
//     the kernels of one training step (tens to hundreds of microseconds apart, with Python or
//     single-threaded element-wise passes in between) still find it awake, and a runnable thread
//     that needs this core (the caller, on an oversubscribed machine) gets it at each poll;
//  3. then it sleeps on the condition variable.
// Waking a sleeping worker costs 10-100 us on a virtual machine (measured on a 2-vCPU KVM guest:
// a 2 x 20 us job lost 13 us after a 100 us gap, 30-100 us after 0.3-1 ms); with stage 2 the
// same jobs lose ~2 us. A pure pause-spin as long as stage 2 competed with the caller for a core
// on a busy machine (2^14 pauses, ~0.4 ms: a 2-thread MLP step ran up to 1.7x slower than a
// 1-thread one); yielding does not hold the core against a runnable thread.
constexpr int kSpinIterations = 1 << 10;
constexpr std::chrono::microseconds kYieldWindow{1000};

// Spins briefly, then yields: when the machine is oversubscribed the thread we wait for may need
// this core to finish its task.
template <typename Pred>
void wait_until(Pred done) {
  for (int spins = 0; !done(); ++spins) {
    if (spins < kSpinIterations) {
      PYDL_PAUSE();
    } else {
      std::this_thread::yield();
    }
  }
}

// A job: tasks [0, n) are claimed through `next`; the submitting thread takes part too.
struct Job {
  TaskFn fn = nullptr;
  void* ctx = nullptr;
  int64_t n = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

class Pool {
 public:
  explicit Pool(int n_workers) {
    workers_.reserve(n_workers);
    for (int i = 0; i < n_workers; ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return static_cast<int>(workers_.size()); }

  // Runs one job; the caller holds g_pool_mu, so jobs never overlap.
  void run(int64_t n, TaskFn fn, void* ctx) {
    Job job;
    job.fn = fn;
    job.ctx = ctx;
    job.n = n;
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = &job;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    work_on(job);
    wait_until([&] { return job.done.load(std::memory_order_acquire) >= n; });
    // Wait until no worker still holds a pointer to `job` before it leaves the stack.
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = nullptr;
    }
    wait_until([&] { return active_.load(std::memory_order_acquire) == 0; });
  }

 private:
  static void work_on(Job& job) {
    for (;;) {
      int64_t t = job.next.fetch_add(1, std::memory_order_relaxed);
      if (t >= job.n) break;
      job.fn(job.ctx, t);
      job.done.fetch_add(1, std::memory_order_release);
    }
  }

  void worker_loop();

  std::vector<std::thread> workers_;
  std::mutex mu_;         // guards job_ and stop_
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> active_{0};  // workers currently inside a job
  Job* job_ = nullptr;
  bool stop_ = false;
};

thread_local bool t_in_worker = false;

void Pool::worker_loop() {
  t_in_worker = true;
  uint64_t seen = 0;
  for (;;) {
    // Wait for the next job: spin, poll and yield, then sleep (see kSpinIterations).
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && spins < kSpinIterations) {
      PYDL_PAUSE();
      ++spins;
    }
    const auto until = std::chrono::steady_clock::now() + kYieldWindow;
    while (generation_.load(std::memory_order_acquire) == seen &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::yield();
    }
    Job* job = nullptr;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || generation_.load(std::memory_order_relaxed) != seen; });
      if (stop_) return;
      seen = generation_.load(std::memory_order_relaxed);
      job = job_;
      if (job) active_.fetch_add(1, std::memory_order_acq_rel);
    }
    if (job) {
      work_on(*job);
      active_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
}

std::mutex g_pool_mu;  // held by the thread whose job runs on g_pool (and while it is replaced)
Pool* g_pool = nullptr;

void forget_pool_in_child() {
  // The child has only the forking thread: the parent's workers and any lock they held are gone.
  // Leak the old pool object (destroying it would join threads that do not exist) and start over.
  new (&g_pool_mu) std::mutex();
  g_pool = nullptr;
}

struct AtForkRegistrar {
  AtForkRegistrar() { pthread_atfork(nullptr, nullptr, forget_pool_in_child); }
} g_atfork_registrar;

}  // namespace

int get_num_threads() {
  int n = g_num_threads.load(std::memory_order_relaxed);
  if (n == 0) {
    int expected = 0;
    g_num_threads.compare_exchange_strong(expected, default_threads());
    n = g_num_threads.load(std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int n) { g_num_threads.store(n < 1 ? 1 : n, std::memory_order_relaxed); }

void parallel_run(int64_t n_tasks, TaskFn fn, void* ctx) {
  if (n_tasks <= 0) return;
  int nt = get_num_threads();
  if (nt > 1 && n_tasks > 1 && !t_in_worker) {
    // A thread that finds the pool busy (another Python thread's kernel) computes alone rather
    // than queueing: no waiting on strangers, and the result is the same either way.
    std::unique_lock<std::mutex> lk(g_pool_mu, std::try_to_lock);
    if (lk.owns_lock()) {
      if (!g_pool || g_pool->size() != nt - 1) {
        delete g_pool;  // joins the old workers; no job is running (we hold g_pool_mu)
        g_pool = new Pool(nt - 1);
      }
      // While its job runs the caller is a worker too: a kernel called from inside a task (a
      // GEMM inside a convolution's per-sample task) then runs serially on that thread instead
      // of trying to lock g_pool_mu, which this thread already holds.
      struct InJob {
        InJob() { t_in_worker = true; }
        ~InJob() { t_in_worker = false; }
      } in_job;
      g_pool->run(n_tasks, fn, ctx);
      return;
    }
  }
  for (int64_t t = 0; t < n_tasks; ++t) fn(ctx, t);
}

}  // namespace pydl
