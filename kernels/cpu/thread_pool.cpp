#include "thread_pool.h"

#include <chrono>
#include <sched.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax() { _mm_pause(); }
#else
static inline void cpu_relax() {}
#endif

namespace nbinfer {

namespace {
constexpr auto kIdleSpin = std::chrono::microseconds(200);   // between runs, before sleeping
constexpr int kYieldAfter = 1 << 14;                          // pauses in a barrier before yielding the core

// Spin until pred() holds; after a long wait (a thread descheduled on a busy machine) yield the core.
template <class Pred> void spin_until(Pred pred) {
    for (int i = 0; !pred(); ++i) {
        if (i < kYieldAfter) cpu_relax();
        else sched_yield();
    }
}
}  // namespace

ThreadPool& pool() {
    static ThreadPool instance;
    return instance;
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(wake_mutex_);
        stop_ = true;
        generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::worker(int id) {
    uint64_t seen = 0;
    for (;;) {
        auto start = std::chrono::steady_clock::now();
        for (int i = 0; generation_.load(std::memory_order_acquire) == seen; ++i) {
            if ((i & 63) || std::chrono::steady_clock::now() - start < kIdleSpin) {
                cpu_relax();
                continue;
            }
            std::unique_lock<std::mutex> lk(wake_mutex_);
            wake_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        }
        seen = generation_.load(std::memory_order_acquire);
        if (stop_) return;
        if (id < active_) (*job_)(id, active_);
        // every worker acknowledges every run, so none still reads job_ / active_ when the next starts
        pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
}

void ThreadPool::run(int nthreads, const std::function<void(int, int)>& fn) {
    std::lock_guard<std::mutex> serial(run_mutex_);
    for (auto& c : counters_) c.value.store(0, std::memory_order_relaxed);
    if (nthreads <= 1) {
        active_ = 1;
        fn(0, 1);
        return;
    }
    while (int(workers_.size()) < nthreads - 1) {
        const int id = int(workers_.size()) + 1;
        workers_.emplace_back([this, id] { worker(id); });
    }
    job_ = &fn;
    active_ = nthreads;
    arrived_.store(0, std::memory_order_relaxed);
    pending_.store(int(workers_.size()), std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> lk(wake_mutex_);   // a worker about to sleep cannot miss this
        generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    fn(0, nthreads);
    spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; });
}

void ThreadPool::barrier() {
    if (active_ <= 1) return;
    const uint32_t phase = phase_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == active_ - 1) {
        arrived_.store(0, std::memory_order_relaxed);
        phase_.fetch_add(1, std::memory_order_release);
    } else {
        spin_until([&] { return phase_.load(std::memory_order_acquire) != phase; });
    }
}

}  // namespace nbinfer
