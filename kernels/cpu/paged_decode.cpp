// Paged decode attention for the CPU backend (nbinfer/engine/cpu_attention.py), fp32.
//
// Layout (per layer): K [Hk, D, S], V [Hk, S, D], S = num_blocks * block_size slots; sequence i's
// token t sits at slot tables[i][t / bs] * bs + t % bs. q [B, Hk, G, D] is pre-scaled, out likewise.
// One work item is one (sequence, KV head): its G query heads' scores over the context, an exact
// softmax, then the weighted sum of V. Items are shared out to `nthreads` threads through an atomic
// counter, so long and short contexts balance themselves. Per block, K is read as [D, bs] rows of
// unit stride and V as [bs, D] rows: both stream at memory speed into 16-float vector accumulators.
// Built at first use by kernels/cpu_decode.py; without a compiler the engine runs the torch loop.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

constexpr int W = 16;    // floats per vector register (AVX-512; the compiler splits it where narrower)
typedef float vec __attribute__((vector_size(W * sizeof(float)), aligned(4)));

inline vec load(const float* p) { vec r; std::memcpy(&r, p, sizeof r); return r; }
inline void store(float* p, vec x) { std::memcpy(p, &x, sizeof x); }

// sc[g][o0 + t] = q[g] . K[:, base + t] for the cnt tokens of one block
inline void block_scores(const float* __restrict q, const float* __restrict kh, int64_t S, int64_t base,
                         int cnt, int G, int D, float* __restrict sc, int lpad, int o0) {
    int t = 0;
    for (; t + W <= cnt; t += W)
        for (int g = 0; g < G; ++g) {
            const float* qg = q + g * D;
            vec acc = {};
            for (int d = 0; d < D; ++d) acc += qg[d] * load(kh + d * S + base + t);
            store(sc + g * lpad + o0 + t, acc);
        }
    for (; t < cnt; ++t)
        for (int g = 0; g < G; ++g) {
            float acc = 0.f;
            for (int d = 0; d < D; ++d) acc += q[g * D + d] * kh[d * S + base + t];
            sc[g * lpad + o0 + t] = acc;
        }
}

void attend(const float* __restrict q, const float* __restrict kh, const float* __restrict vh,
            const int32_t* __restrict table, int n, int G, int D, int64_t S, int bs,
            float* __restrict sc, float* __restrict acc, float* __restrict out) {
    const int nb = (n + bs - 1) / bs, lpad = nb * bs;
    for (int b = 0; b < nb; ++b)
        block_scores(q, kh, S, int64_t(table[b]) * bs, std::min(bs, n - b * bs), G, D, sc, lpad, b * bs);
    std::fill(acc, acc + G * D, 0.f);
    for (int g = 0; g < G; ++g) {          // softmax numerators in place; 1/sum applied at the end
        float* __restrict sg = sc + g * lpad;
        float m = -INFINITY;
        for (int t = 0; t < n; ++t) m = std::max(m, sg[t]);
        float z = 0.f;
        for (int t = 0; t < n; ++t) { sg[t] = std::exp(sg[t] - m); z += sg[t]; }
        out[g * D] = 1.f / z;              // parked here until the weighted sum is done
    }
    for (int b = 0; b < nb; ++b) {
        const float* __restrict vb = vh + int64_t(table[b]) * bs * D;
        const int o0 = b * bs, cnt = std::min(bs, n - o0);
        for (int g = 0; g < G; ++g) {
            const float* p = sc + g * lpad + o0;
            for (int dc = 0; dc < D; dc += W) {     // D % W == 0 (checked by the caller)
                vec a = load(acc + g * D + dc);
                for (int t = 0; t < cnt; ++t) a += p[t] * load(vb + t * D + dc);
                store(acc + g * D + dc, a);
            }
        }
    }
    for (int g = 0; g < G; ++g) {
        const float inv = out[g * D];
        for (int d = 0; d < D; ++d) out[g * D + d] = acc[g * D + d] * inv;
    }
}

}  // namespace

extern "C" int nbinfer_vector_width() { return W; }

extern "C" void nbinfer_paged_decode_f32(const float* q, const float* k, const float* v, const int32_t* tables,
                                         const int32_t* lens, float* out, int B, int Hk, int G, int D,
                                         int64_t S, int table_width, int bs, int nthreads) {
    int maxlen = 0;
    for (int i = 0; i < B; ++i) maxlen = std::max(maxlen, lens[i]);
    const int lmax = (maxlen + bs - 1) / bs * bs;
    std::atomic<int> next{0};
    auto worker = [&]() {
        std::vector<float> sc(size_t(G) * lmax), acc(size_t(G) * D);
        for (int item; (item = next.fetch_add(1)) < B * Hk;) {
            const int i = item / Hk, h = item % Hk;
            attend(q + size_t(item) * G * D, k + size_t(h) * D * S, v + size_t(h) * S * D,
                   tables + size_t(i) * table_width, lens[i], G, D, S, bs, sc.data(), acc.data(),
                   out + size_t(item) * G * D);
        }
    };
    const int extra = std::max(0, std::min(nthreads, B * Hk) - 1);
    std::vector<std::thread> pool;
    for (int t = 0; t < extra; ++t) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
}
