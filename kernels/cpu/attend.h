// Attention of one (token, KV head) over its paged context: an fp32 or bf16 cache (vec.h), fp32 sums.
//
// Layout (per layer): K [Hk, D, S], V [Hk, S, D], S = num_blocks * block_size slots; token t of the
// sequence sits at slot table[t / bs] * bs + t % bs. q holds the G query heads of the KV head [G, D],
// pre-scaled; out likewise. Scores over the context, an exact softmax, then the weighted sum of V.
// Per block, K is read as [D, bs] rows of unit stride and V as [bs, D] rows, each vector once for up
// to 4 query heads at a time (GQA), into named register accumulators (matmul.h's gvec). D must be a
// multiple of the vector width.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "vec.h"

namespace nbinfer {

// sc[g * lpad + o0 + t] = q_g . K[:, base + t] for the NG heads q_g = q + g D and the cnt tokens of a block
template <int NG, class KV>
inline void block_scores(const float* __restrict q, const KV* __restrict kh, int64_t S, int64_t base, int cnt,
                         int D, float* __restrict sc, int lpad, int o0) {
    const float *q0 = q, *q1 = q + D, *q2 = q + 2 * D, *q3 = q + 3 * D;
    int t = 0;
    for (; t + GW <= cnt; t += GW) {
        gvec a0 = {}, a1 = {}, a2 = {}, a3 = {};
        const KV* k = kh + base + t;
        for (int d = 0; d < D; ++d, k += S) {
            const gvec kv = gload(k);
            a0 += q0[d] * kv;
            if constexpr (NG > 1) a1 += q1[d] * kv;
            if constexpr (NG > 2) a2 += q2[d] * kv;
            if constexpr (NG > 3) a3 += q3[d] * kv;
        }
        float* s = sc + o0 + t;
        std::memcpy(s, &a0, sizeof a0);
        if constexpr (NG > 1) std::memcpy(s + lpad, &a1, sizeof a1);
        if constexpr (NG > 2) std::memcpy(s + 2 * lpad, &a2, sizeof a2);
        if constexpr (NG > 3) std::memcpy(s + 3 * lpad, &a3, sizeof a3);
    }
    for (; t < cnt; ++t)
        for (int g = 0; g < NG; ++g) {
            float acc = 0.f;
            for (int d = 0; d < D; ++d) acc += q[g * D + d] * to_f32(kh[d * S + base + t]);
            sc[g * lpad + o0 + t] = acc;
        }
}

// acc_g += sum_t p_g[t] V[t] for the NG heads (p_g = p + g lpad, acc_g = acc + g D) and cnt rows of a block
template <int NG, class KV>
inline void block_values(const float* __restrict p, int lpad, const KV* __restrict vb, int cnt, int D,
                         float* __restrict acc) {
    const float *p0 = p, *p1 = p + lpad, *p2 = p + 2 * lpad, *p3 = p + 3 * lpad;
    for (int dc = 0; dc < D; dc += GW) {
        gvec a0 = gload(acc + dc), a1 = {}, a2 = {}, a3 = {};
        if constexpr (NG > 1) a1 = gload(acc + D + dc);
        if constexpr (NG > 2) a2 = gload(acc + 2 * D + dc);
        if constexpr (NG > 3) a3 = gload(acc + 3 * D + dc);
        const KV* v = vb + dc;
        for (int t = 0; t < cnt; ++t, v += D) {
            const gvec vv = gload(v);
            a0 += p0[t] * vv;
            if constexpr (NG > 1) a1 += p1[t] * vv;
            if constexpr (NG > 2) a2 += p2[t] * vv;
            if constexpr (NG > 3) a3 += p3[t] * vv;
        }
        std::memcpy(acc + dc, &a0, sizeof a0);
        if constexpr (NG > 1) std::memcpy(acc + D + dc, &a1, sizeof a1);
        if constexpr (NG > 2) std::memcpy(acc + 2 * D + dc, &a2, sizeof a2);
        if constexpr (NG > 3) std::memcpy(acc + 3 * D + dc, &a3, sizeof a3);
    }
}

// The query heads in chunks of up to 4, each chunk reading every K and V vector once.
template <class F>
inline void by_head_chunks(int G, F&& f) {
    for (int g = 0; g < G; g += 4) {
        switch (std::min(4, G - g)) {
            case 1: f(g, std::integral_constant<int, 1>()); break;
            case 2: f(g, std::integral_constant<int, 2>()); break;
            case 3: f(g, std::integral_constant<int, 3>()); break;
            default: f(g, std::integral_constant<int, 4>()); break;
        }
    }
}

// sc: scratch of G * (n rounded up to bs) floats; acc: scratch of G * D floats
template <class KV>
inline void attend(const float* __restrict q, const KV* __restrict kh, const KV* __restrict vh,
                   const int32_t* __restrict table, int n, int G, int D, int64_t S, int bs,
                   float* __restrict sc, float* __restrict acc, float* __restrict out) {
    const int nb = (n + bs - 1) / bs, lpad = nb * bs;
    by_head_chunks(G, [&](int g, auto ng) {
        for (int b = 0; b < nb; ++b)
            block_scores<decltype(ng)::value>(q + g * D, kh, S, int64_t(table[b]) * bs, std::min(bs, n - b * bs), D,
                                              sc + g * lpad, lpad, b * bs);
    });
    std::fill(acc, acc + G * D, 0.f);
    for (int g = 0; g < G; ++g) {          // softmax numerators in place; 1/sum applied at the end
        float* __restrict sg = sc + g * lpad;
        float m = -INFINITY;
        for (int t = 0; t < n; ++t) m = std::max(m, sg[t]);
        float z = 0.f;
        for (int t = 0; t < n; ++t) { sg[t] = std::exp(sg[t] - m); z += sg[t]; }
        out[g * D] = 1.f / z;              // parked here until the weighted sum is done
    }
    by_head_chunks(G, [&](int g, auto ng) {
        for (int b = 0; b < nb; ++b)
            block_values<decltype(ng)::value>(sc + g * lpad + b * bs, lpad, vh + int64_t(table[b]) * bs * D,
                                              std::min(bs, n - b * bs), D, acc + g * D);
    });
    for (int g = 0; g < G; ++g) {
        const float inv = out[g * D];
        for (int d = 0; d < D; ++d) out[g * D + d] = acc[g * D + d] * inv;
    }
}

}  // namespace nbinfer
