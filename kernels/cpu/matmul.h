// Y = X W^T for the CPU step (llama_step.cpp): W [N, K] (fp32 or bf16, widened on load: vec.h), X [T, K]
// fp32, sums in fp32.
//
// Both operands are packed so that the inner loop is an outer product, as in BLAS micro-kernels:
// - W, once at load (kernels/cpu_llama.py): panels of PW = 2 GW rows, P[p][k][i] = W[p PW + i][k], rows
//   past N zero. A panel is one contiguous stream, read once from memory for all tokens.
// - X, by whichever phase produces it (packed_at): groups of up to MT = 6 tokens, k-major within a group,
//   so a k-step broadcasts the group's 6 values from one cache line.
// Each k-step then loads 2 weight vectors and 6 broadcasts for 12 FMAs into 12 named accumulators (of
// the 16 AVX2 registers), with no horizontal sums. Measured on one core (AVX2, T=32, K=576, N=3072):
// 65 GFLOP/s against 21 for the dot-product kernel it replaces (4 rows x 3 tokens) and 68 for MKL at
// large shapes; the dot-product kernel spent its time on reloads and horizontal sums.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "vec.h"

namespace nbinfer {

constexpr int PW = 2 * GW;   // rows per weight panel
constexpr int MT = 6;        // tokens per activation group

// tokens in token t's packed group (of T tokens): the stride between its consecutive k
inline int packed_width(int t, int T) { return std::min(MT, T - t / MT * MT); }

// index of X[t][k] in the packed activations of T tokens of width K
inline size_t packed_at(int t, int k, int K, int T) {
    const int t0 = t - t % MT;
    return size_t(t0) * K + size_t(k) * packed_width(t, T) + (t - t0);
}

// y[t * ldy + i] = P[i] . x_t for one panel and the M tokens of one packed group (the micro-kernels
// name every accumulator: GCC keeps arrays of vectors in memory, a store per FMA). Every M sums a
// token's products in the same order, so a token's logits do not depend on how many tokens share its
// step (a one-token kernel with two chains per vector was faster with int8 weights, but made greedy
// output depend on the batch)
template <int M, class Wt>
inline void panel_kernel(const Wt* __restrict p, int K, const float* __restrict xp, float* __restrict y,
                         int64_t ldy) {
    gvec c00 = {}, c01 = {}, c10 = {}, c11 = {}, c20 = {}, c21 = {}, c30 = {}, c31 = {}, c40 = {}, c41 = {},
         c50 = {}, c51 = {};
    for (int k = 0; k < K; ++k, p += PW, xp += M) {
        // int8 panels go by too fast for the hardware prefetcher alone (one core: 9.5 -> 12.5 GB/s with
        // this, 2 KB ahead, non-temporal); fp32 ones do not gain
        if constexpr (sizeof(Wt) == 1) __builtin_prefetch(reinterpret_cast<const char*>(p) + 2048, 0, 0);
        const gvec w0 = gload(p), w1 = gload(p + GW);
        gvec b = gvec{} + xp[0];
        c00 += w0 * b, c01 += w1 * b;
        if constexpr (M > 1) b = gvec{} + xp[1], c10 += w0 * b, c11 += w1 * b;
        if constexpr (M > 2) b = gvec{} + xp[2], c20 += w0 * b, c21 += w1 * b;
        if constexpr (M > 3) b = gvec{} + xp[3], c30 += w0 * b, c31 += w1 * b;
        if constexpr (M > 4) b = gvec{} + xp[4], c40 += w0 * b, c41 += w1 * b;
        if constexpr (M > 5) b = gvec{} + xp[5], c50 += w0 * b, c51 += w1 * b;
    }
    const gvec cs[MT][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int t = 0; t < M; ++t) {
        *reinterpret_cast<gvec_u*>(y + t * ldy) = cs[t][0];
        *reinterpret_cast<gvec_u*>(y + t * ldy + GW) = cs[t][1];
    }
}

// Y[t * ldy + (r - p0 PW)] = W[r] . X[t] for the rows r of panels [p0, p1) and tokens t < T (xp packed)
template <class Wt>
inline void matmul_panels(const Wt* __restrict P, int K, const float* __restrict xp, int T, int p0, int p1,
                          float* __restrict Y, int64_t ldy) {
    for (int p = p0; p < p1; ++p) {
        const Wt* w = P + size_t(p) * K * PW;
        for (int t0 = 0; t0 < T; t0 += MT) {
            const float* x = xp + size_t(t0) * K;
            float* y = Y + t0 * ldy + (p - p0) * PW;
            switch (std::min(MT, T - t0)) {
                case 6: panel_kernel<6>(w, K, x, y, ldy); break;
                case 5: panel_kernel<5>(w, K, x, y, ldy); break;
                case 4: panel_kernel<4>(w, K, x, y, ldy); break;
                case 3: panel_kernel<3>(w, K, x, y, ldy); break;
                case 2: panel_kernel<2>(w, K, x, y, ldy); break;
                default: panel_kernel<1>(w, K, x, y, ldy); break;
            }
        }
    }
}

}  // namespace nbinfer
