// Rows of Y = X W^T for the CPU step (llama_step.cpp), with W [N, K] (fp32 or bf16, widened on load:
// vec.h) and X [T, K] fp32, both unit stride along K, as nn.Linear stores them: each output is a dot
// product of two contiguous rows, summed in fp32.
//
// The micro-kernel keeps 4 weight rows x 3 tokens of partial sums in registers (12 vectors), so each
// k-step loads 4 weight vectors and 3 token vectors for 12 FMAs: arithmetic-bound once the rows are in
// L1 (one token: bound by streaming the weights from memory, which is then the whole cost). Weight rows
// are read once per block of 4 and reused for every token, so a step reads its weights once.
#pragma once
#include <algorithm>
#include <cstdint>

#include "vec.h"

namespace nbinfer {

// Tail of a dot product past the last full vector.
template <class Wt>
inline float dot_tail(const Wt* __restrict w, const float* __restrict x, int k, int K) {
    float s = 0.f;
    for (; k < K; ++k) s += to_f32(w[k]) * x[k];
    return s;
}

// The micro-kernels below name every accumulator: GCC keeps arrays of vectors in memory, which costs
// a store per FMA (measured: 1 GFLOP/s instead of tens).

// y[0] = w . x
template <class Wt>
inline void dot_1x1(const Wt* __restrict w, int K, const float* __restrict x, float* __restrict y) {
    gvec a = {};
    int k = 0;
    for (; k + GW <= K; k += GW) a += gload(w + k) * gload(x + k);
    y[0] = ghsum(a) + dot_tail(w, x, k, K);
}

// y[i] = w_i . x for the 4 rows w_i = w + i K
template <class Wt>
inline void dot_4x1(const Wt* __restrict w, int K, const float* __restrict x, float* __restrict y) {
    const Wt *w0 = w, *w1 = w + K, *w2 = w + 2 * int64_t(K), *w3 = w + 3 * int64_t(K);
    gvec a0 = {}, a1 = {}, a2 = {}, a3 = {};
    int k = 0;
    for (; k + GW <= K; k += GW) {
        // one token streams the weights from memory: ask for the next block's rows early (non-temporal;
        // two of its four rows, the hardware prefetcher follows): measured 15.7 -> 18.7 GB/s on one core
        __builtin_prefetch(w0 + 4 * int64_t(K) + k, 0, 0);
        __builtin_prefetch(w2 + 4 * int64_t(K) + k, 0, 0);
        const gvec xv = gload(x + k);
        a0 += gload(w0 + k) * xv;
        a1 += gload(w1 + k) * xv;
        a2 += gload(w2 + k) * xv;
        a3 += gload(w3 + k) * xv;
    }
    y[0] = ghsum(a0) + dot_tail(w0, x, k, K);
    y[1] = ghsum(a1) + dot_tail(w1, x, k, K);
    y[2] = ghsum(a2) + dot_tail(w2, x, k, K);
    y[3] = ghsum(a3) + dot_tail(w3, x, k, K);
}

// y[c * ldy + i] = w_i . x_c for 4 rows and the 2 tokens x_0 = x, x_1 = x + ldx
template <class Wt>
inline void dot_4x2(const Wt* __restrict w, int K, const float* __restrict x, int64_t ldx, float* __restrict y,
                    int64_t ldy) {
    const Wt *w0 = w, *w1 = w + K, *w2 = w + 2 * int64_t(K), *w3 = w + 3 * int64_t(K);
    const float *x0 = x, *x1 = x + ldx;
    gvec a00 = {}, a10 = {}, a20 = {}, a30 = {}, a01 = {}, a11 = {}, a21 = {}, a31 = {};
    int k = 0;
    for (; k + GW <= K; k += GW) {
        const gvec u = gload(x0 + k), v = gload(x1 + k);
        gvec wv = gload(w0 + k);
        a00 += wv * u, a01 += wv * v;
        wv = gload(w1 + k);
        a10 += wv * u, a11 += wv * v;
        wv = gload(w2 + k);
        a20 += wv * u, a21 += wv * v;
        wv = gload(w3 + k);
        a30 += wv * u, a31 += wv * v;
    }
    y[0] = ghsum(a00) + dot_tail(w0, x0, k, K);
    y[1] = ghsum(a10) + dot_tail(w1, x0, k, K);
    y[2] = ghsum(a20) + dot_tail(w2, x0, k, K);
    y[3] = ghsum(a30) + dot_tail(w3, x0, k, K);
    y[ldy + 0] = ghsum(a01) + dot_tail(w0, x1, k, K);
    y[ldy + 1] = ghsum(a11) + dot_tail(w1, x1, k, K);
    y[ldy + 2] = ghsum(a21) + dot_tail(w2, x1, k, K);
    y[ldy + 3] = ghsum(a31) + dot_tail(w3, x1, k, K);
}

// y[c * ldy + i] = w_i . x_c for 4 rows and 3 tokens: 12 accumulators + 3 token vectors + 1 weight
// vector fill the 16 AVX2 registers; 7 loads per 12 FMAs (measured ~1.4x the 4x2 block's rate)
template <class Wt>
inline void dot_4x3(const Wt* __restrict w, int K, const float* __restrict x, int64_t ldx, float* __restrict y,
                    int64_t ldy) {
    const Wt *w0 = w, *w1 = w + K, *w2 = w + 2 * int64_t(K), *w3 = w + 3 * int64_t(K);
    const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx;
    gvec a00 = {}, a10 = {}, a20 = {}, a30 = {}, a01 = {}, a11 = {}, a21 = {}, a31 = {};
    gvec a02 = {}, a12 = {}, a22 = {}, a32 = {};
    int k = 0;
    for (; k + GW <= K; k += GW) {
        const gvec u = gload(x0 + k), v = gload(x1 + k), z = gload(x2 + k);
        gvec wv = gload(w0 + k);
        a00 += wv * u, a01 += wv * v, a02 += wv * z;
        wv = gload(w1 + k);
        a10 += wv * u, a11 += wv * v, a12 += wv * z;
        wv = gload(w2 + k);
        a20 += wv * u, a21 += wv * v, a22 += wv * z;
        wv = gload(w3 + k);
        a30 += wv * u, a31 += wv * v, a32 += wv * z;
    }
    const Wt* ws[4] = {w0, w1, w2, w3};
    const gvec as[3][4] = {{a00, a10, a20, a30}, {a01, a11, a21, a31}, {a02, a12, a22, a32}};
    const float* xs[3] = {x0, x1, x2};
    for (int c = 0; c < 3; ++c)
        for (int i = 0; i < 4; ++i) y[c * ldy + i] = ghsum(as[c][i]) + dot_tail(ws[i], xs[c], k, K);
}

// Y[t * ldy + (r - r0)] = W[r, :K] . X[t, :K] for rows r in [r0, r1), tokens t < T. Tokens go in tiles of
// ~128 KB of X, so a tile stays in L2 while every 4-row block of the chunk reads it (all of X at once
// spills out of L2 past ~50 tokens, and each block then re-reads it from L3: measured 0.6x MKL at 256).
template <class Wt>
inline void matmul_rows(const Wt* __restrict W, int K, const float* __restrict X, int64_t ldx, int T,
                        int r0, int r1, float* __restrict Y, int64_t ldy) {
    const int tile = std::max(3, (32768 / std::max(K, 1)) / 3 * 3);
    for (int t0 = 0; t0 < T; t0 += tile) {
        const int t1 = std::min(T, t0 + tile);
        int r = r0;
        for (; r + 4 <= r1; r += 4) {
            const Wt* w = W + int64_t(r) * K;
            float* y = Y + (r - r0);
            int t = t0;
            for (; t + 3 <= t1; t += 3) dot_4x3(w, K, X + t * ldx, ldx, y + t * ldy, ldy);
            if (t + 2 == t1) dot_4x2(w, K, X + t * ldx, ldx, y + t * ldy, ldy);
            else if (t + 1 == t1) dot_4x1(w, K, X + t * ldx, y + t * ldy);
        }
        for (; r < r1; ++r)
            for (int t = t0; t < t1; ++t) dot_1x1(W + int64_t(r) * K, K, X + t * ldx, Y + t * ldy + (r - r0));
    }
}

}  // namespace nbinfer
