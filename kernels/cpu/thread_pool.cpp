#include "thread_pool.h"

#include <chrono>
#include <climits>
#include <sched.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax() { _mm_pause(); }
#else
static inline void cpu_relax() {}
#endif

namespace nbinfer {

namespace {
constexpr auto kIdleSpin = std::chrono::microseconds(200);   // between runs, before sleeping
constexpr auto kPhaseSpin = std::chrono::microseconds(50);   // waiting for a phase, before sleeping
constexpr int kYieldAfter = 1 << 14;                          // pauses before yielding the core (no futex)

// Sleep while *addr == expected (Linux futex; elsewhere a yield), and wake every sleeper on addr.
void futex_wait(std::atomic<uint32_t>* addr, uint32_t expected) {
#if defined(__linux__)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
#else
    (void)addr, (void)expected;
    sched_yield();
#endif
}
void futex_wake_all(std::atomic<uint32_t>* addr) {
#if defined(__linux__)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
    (void)addr;
#endif
}

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

void ThreadPool::worker(int id, uint64_t seen) {
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
    for (auto& s : slots_) s.next.store(0, std::memory_order_relaxed), s.done.store(0, std::memory_order_relaxed);
    if (nthreads <= 1) {
        active_ = 1;
        fn(0, 1);
        return;
    }
    while (int(workers_.size()) < nthreads - 1) {
        const int id = int(workers_.size()) + 1;
        // it starts at the current run: from 0 it would take an earlier run for a new one and read
        // job_ / active_ while they are written below, then acknowledge this run twice
        const uint64_t seen = generation_.load(std::memory_order_acquire);
        workers_.emplace_back([this, id, seen] { worker(id, seen); });
    }
    job_ = &fn;
    active_ = nthreads;
    pending_.store(int(workers_.size()), std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> lk(wake_mutex_);   // a worker about to sleep cannot miss this
        generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    fn(0, nthreads);
    spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; });
}

void ThreadPool::finished(Slot& s) {
    if (sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake_all(&s.done);
}

void ThreadPool::wait_done(Slot& s, int n) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0;; ++i) {
        const uint32_t done = s.done.load(std::memory_order_acquire);
        if (int(done) >= n) return;
        if ((i & 63) || std::chrono::steady_clock::now() - start < kPhaseSpin) {
            cpu_relax();
            continue;
        }
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        if (s.done.load(std::memory_order_seq_cst) == done) futex_wait(&s.done, done);
        sleepers_.fetch_sub(1, std::memory_order_seq_cst);
    }
}

}  // namespace nbinfer
