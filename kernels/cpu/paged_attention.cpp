// Paged attention for the CPU backend (nbinfer/engine/attention/cpu_backend.py) through the block
// tables, with the step's new K/V already in the cache (fp32 or bf16; queries and sums in fp32):
// - decode: one query token per sequence, every decode sequence of a step in one call;
// - prefill: every prefill token of a step (fresh prompts and chunks after a cached prefix alike),
//   each attending causally to its sequence's context up to its own position.
// One work item is one (token, KV head) (attend.h), claimed by the pool's threads (parallel_for), so
// long and short contexts balance themselves. q [T, Hk, G, D] is pre-scaled, out likewise.
// Built at first use by kernels/cpu_build.py.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "attend.h"
#include "thread_pool.h"

using namespace nbinfer;

extern "C" int nbinfer_vector_width() { return GW; }

namespace {

template <class KV>
void paged_decode(const float* q, const KV* k, const KV* v, const int32_t* tables, const int32_t* lens, float* out,
                  int B, int Hk, int G, int D, int64_t S, int table_width, int bs, int nthreads) {
    int maxlen = 0;
    for (int i = 0; i < B; ++i) maxlen = std::max(maxlen, lens[i]);
    const int lmax = (maxlen + bs - 1) / bs * bs;
    pool().run(std::max(1, std::min(nthreads, B * Hk)), [&](int, int) {
        std::vector<float> sc(size_t(G) * lmax), acc(size_t(G) * D);
        pool().parallel_for(0, B * Hk, [&](int item) {
            const int i = item / Hk, h = item % Hk;
            attend(q + size_t(item) * G * D, k + size_t(h) * D * S, v + size_t(h) * S * D,
                   tables + size_t(i) * table_width, lens[i], G, D, S, bs, sc.data(), acc.data(),
                   out + size_t(item) * G * D);
        });
    });
}

// T tokens: token t is at position pos[t] of the sequence whose block table is row seq_of[t].
template <class KV>
void paged_prefill(const float* q, const KV* k, const KV* v, const int32_t* tables, const int32_t* seq_of,
                   const int64_t* pos, float* out, int T, int Hk, int G, int D, int64_t S, int table_width, int bs,
                   int nthreads) {
    int64_t maxpos = 0;
    for (int t = 0; t < T; ++t) maxpos = std::max(maxpos, pos[t]);
    const int lmax = int((maxpos + 1 + bs - 1) / bs * bs);
    pool().run(std::max(1, std::min(nthreads, T * Hk)), [&](int, int) {
        std::vector<float> sc(size_t(G) * lmax), acc(size_t(G) * D);
        pool().parallel_for(0, T * Hk, [&](int item) {
            const int t = item / Hk, h = item % Hk;
            attend(q + size_t(item) * G * D, k + size_t(h) * D * S, v + size_t(h) * S * D,
                   tables + size_t(seq_of[t]) * table_width, int(pos[t]) + 1, G, D, S, bs, sc.data(), acc.data(),
                   out + size_t(item) * G * D);
        });
    });
}

}  // namespace

// q, out fp32 [B or T, Hk, G, D]; the cache fp32 (_f32) or bf16 (_bf16)
#define NBINFER_PAGED(SUFFIX, KV)                                                                             \
    extern "C" void nbinfer_paged_decode_##SUFFIX(const float* q, const KV* k, const KV* v, const int32_t* tables, \
                                                 const int32_t* lens, float* out, int B, int Hk, int G, int D,   \
                                                 int64_t S, int table_width, int bs, int nthreads) {              \
        paged_decode(q, k, v, tables, lens, out, B, Hk, G, D, S, table_width, bs, nthreads);                     \
    }                                                                                                             \
    extern "C" void nbinfer_paged_prefill_##SUFFIX(const float* q, const KV* k, const KV* v, const int32_t* tables, \
                                                  const int32_t* seq_of, const int64_t* pos, float* out, int T,  \
                                                  int Hk, int G, int D, int64_t S, int table_width, int bs,      \
                                                  int nthreads) {                                                 \
        paged_prefill(q, k, v, tables, seq_of, pos, out, T, Hk, G, D, S, table_width, bs, nthreads);             \
    }
NBINFER_PAGED(f32, float)
NBINFER_PAGED(bf16, bf16)
