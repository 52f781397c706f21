// Rows of Y = X W^T for the CPU step (llama_step.cpp), fp32, with W [N, K] and X [T, K] both unit
// stride along K, as nn.Linear stores them: each output is a dot product of two contiguous rows.
//
// The micro-kernel keeps 4 weight rows x 2 tokens of partial sums in registers (8 vectors), so each
// k-step loads 4 weight vectors and 2 token vectors for 8 FMAs: arithmetic-bound once the rows are in
// L1 (one token: bound by streaming the weights from memory, which is then the whole cost). Weight rows
// are read once per block of 4 and reused for every token, so a step reads its weights once.
#pragma once
#include <cstdint>
#include <cstring>

namespace nbinfer {

#if defined(__AVX512F__)
constexpr int GW = 16;   // floats per register
#else
constexpr int GW = 8;
#endif
typedef float gvec __attribute__((vector_size(GW * sizeof(float)), aligned(4)));

inline gvec gload(const float* p) { gvec r; std::memcpy(&r, p, sizeof r); return r; }
inline float ghsum(gvec x) {
    float s = 0.f;
    for (int i = 0; i < GW; ++i) s += x[i];
    return s;
}

// y[c * ldy + i] = w[i * K :] . x[c * ldx :] for i < R, c < C
template <int R, int C>
inline void dot_block(const float* __restrict w, int K, const float* __restrict x, int64_t ldx,
                      float* __restrict y, int64_t ldy) {
    gvec acc[R][C] = {};
    int k = 0;
    for (; k + GW <= K; k += GW) {
        gvec xv[C];
        for (int c = 0; c < C; ++c) xv[c] = gload(x + c * ldx + k);
        for (int i = 0; i < R; ++i) {
            const gvec wv = gload(w + int64_t(i) * K + k);
            for (int c = 0; c < C; ++c) acc[i][c] += wv * xv[c];
        }
    }
    for (int i = 0; i < R; ++i)
        for (int c = 0; c < C; ++c) {
            float s = ghsum(acc[i][c]);
            for (int kk = k; kk < K; ++kk) s += w[int64_t(i) * K + kk] * x[c * ldx + kk];
            y[c * ldy + i] = s;
        }
}

// Y[t * ldy + (r - r0)] = W[r, :K] . X[t, :K] for rows r in [r0, r1), tokens t < T
inline void matmul_rows(const float* __restrict W, int K, const float* __restrict X, int64_t ldx, int T,
                        int r0, int r1, float* __restrict Y, int64_t ldy) {
    int r = r0;
    for (; r + 4 <= r1; r += 4) {
        const float* w = W + int64_t(r) * K;
        float* y = Y + (r - r0);
        int t = 0;
        for (; t + 2 <= T; t += 2) dot_block<4, 2>(w, K, X + t * ldx, ldx, y + t * ldy, ldy);
        if (t < T) dot_block<4, 1>(w, K, X + t * ldx, ldx, y + t * ldy, ldy);
    }
    for (; r < r1; ++r)
        for (int t = 0; t < T; ++t)
            dot_block<1, 1>(W + int64_t(r) * K, K, X + t * ldx, ldx, Y + t * ldy + (r - r0), ldy);
}

}  // namespace nbinfer
