// Decode attention of one (sequence, KV head) over its paged context, fp32.
//
// Layout (per layer): K [Hk, D, S], V [Hk, S, D], S = num_blocks * block_size slots; token t of the
// sequence sits at slot table[t / bs] * bs + t % bs. q holds the G query heads of the KV head [G, D],
// pre-scaled; out likewise. Scores over the context, an exact softmax, then the weighted sum of V.
// Per block, K is read as [D, bs] rows of unit stride and V as [bs, D] rows: both stream at memory
// speed into vector accumulators. D must be a multiple of W.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "vec.h"

namespace nbinfer {

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

// sc: scratch of G * (n rounded up to bs) floats; acc: scratch of G * D floats
inline void attend(const float* __restrict q, const float* __restrict kh, const float* __restrict vh,
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
            for (int dc = 0; dc < D; dc += W) {
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

}  // namespace nbinfer
