// One persistent pool of worker threads for every CPU kernel in this library.
//
// Why not OpenMP or a thread per call: the engine calls a kernel from its own thread, where entering
// an OpenMP region costs tens of microseconds (libgomp hands off to a second team), and creating
// threads per call costs about as much. A decode step of a small model is many short phases, so the
// pool's workers stay awake between phases (spinning, with a pause), and between calls spin for a
// short while before sleeping on a condition variable; an idle engine costs no CPU. A barrier spins
// for tens of microseconds, then sleeps on a futex (a busy machine: see barrier()).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace nbinfer {

class ThreadPool {
public:
    // Run fn(tid, nthreads) on nthreads threads, the caller being tid 0; return when all are done.
    // Calls from several threads are serialised.
    void run(int nthreads, const std::function<void(int, int)>& fn);
    // Inside run(): wait until every thread of the run has reached this point.
    void barrier();
    // Inside run(): the next unclaimed index of counter `slot` (reset to 0 at each run's start).
    int claim(int slot) { return counters_[slot].value.fetch_add(1, std::memory_order_relaxed); }
    static constexpr int kCounters = 512;
    ~ThreadPool();

private:
    void worker(int id);
    struct alignas(64) Counter { std::atomic<int> value{0}; };

    std::mutex run_mutex_;                      // one run at a time
    std::mutex wake_mutex_;
    std::condition_variable wake_;
    std::vector<std::thread> workers_;
    std::atomic<uint64_t> generation_{0};       // bumped to start a run
    std::atomic<int> pending_{0};               // workers that have not yet finished the current run
    const std::function<void(int, int)>* job_ = nullptr;
    int active_ = 1;
    bool stop_ = false;
    alignas(64) std::atomic<int> arrived_{0};
    alignas(64) std::atomic<uint32_t> phase_{0};
    std::atomic<int> sleepers_{0};               // threads asleep in barrier()
    Counter counters_[kCounters];
};

ThreadPool& pool();

}  // namespace nbinfer
