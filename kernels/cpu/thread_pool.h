// One persistent pool of worker threads for every CPU kernel in this library.
//
// Why not OpenMP or a thread per call: the engine calls a kernel from its own thread, where entering
// an OpenMP region costs tens of microseconds (libgomp hands off to a second team), and creating
// threads per call costs about as much. A step of a small model is hundreds of short phases, so:
// - Work in a phase is a range of items that threads claim from a shared counter; a phase ends when
//   all its items are *done*, not when every thread has arrived. A thread the OS has descheduled (a
//   machine busy with other work) holds up nobody unless it holds an unfinished item; when it runs
//   again it finds the phases it missed fully claimed and catches up. (An arrival barrier instead
//   costs a scheduler time slice per phase whenever a thread is off its core: measured 0.7 s a step.)
// - Waiting threads spin tens of microseconds (an idle machine: the others finish within that), then
//   sleep on a futex; between calls workers spin a little, then sleep: an idle engine costs no CPU.
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
    static constexpr int kSlots = 1024;     // phases per run

    // Run fn(tid, nthreads) on nthreads threads, the caller being tid 0; return when all are done.
    // Calls from several threads are serialised.
    void run(int nthreads, const std::function<void(int, int)>& fn);

    // Inside run(), called by every thread with the same arguments: f(i) for each i < n, each item
    // by whichever thread claims it, returning once all n are done. Each phase of a run takes its
    // own slot (< kSlots), in the same order on every thread.
    template <class F> void parallel_for(int slot, int n, F&& f) {
        Slot& s = slots_[slot];
        for (int i; (i = s.next.fetch_add(1, std::memory_order_relaxed)) < n;) {
            f(i);
            if (s.done.fetch_add(1, std::memory_order_seq_cst) + 1 == uint32_t(n)) finished(s);
        }
        wait_done(s, n);
    }
    ~ThreadPool();

private:
    struct alignas(64) Slot {
        std::atomic<int> next{0};
        alignas(64) std::atomic<uint32_t> done{0};
    };
    void worker(int id, uint64_t seen);   // seen: the run it was started at
    void finished(Slot& s);
    void wait_done(Slot& s, int n);

    std::mutex run_mutex_;                      // one run at a time
    std::mutex wake_mutex_;
    std::condition_variable wake_;
    std::vector<std::thread> workers_;
    std::atomic<uint64_t> generation_{0};       // bumped to start a run
    std::atomic<int> pending_{0};               // workers that have not yet finished the current run
    const std::function<void(int, int)>* job_ = nullptr;
    int active_ = 1;
    bool stop_ = false;
    std::atomic<int> sleepers_{0};              // threads asleep in wait_done()
    Slot slots_[kSlots];
};

ThreadPool& pool();

}  // namespace nbinfer
