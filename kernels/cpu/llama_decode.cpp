// A whole Llama-family decode step on the CPU, fp32: a few new tokens (one per sequence) through every
// layer to their logits, in one call (kernels/cpu_llama.py; the torch model in nbinfer/models/llama.py
// is the reference, and runs every step this one does not take).
//
// Why one call: a decode step of a small model is hundreds of small ops. From the engine's thread each
// torch op pays dispatch and an OpenMP hand-off, and the matrix-vector products, which are nearly all
// of the work, only reach memory bandwidth on every core at once. Here the step is a sequence of
// phases run by the pool's threads (thread_pool.h), separated by barriers:
//   per layer: [qkv rows] | [attention per (sequence, KV head): q/k norm, RoPE, KV write, attend]
//              | [o_proj rows, += residual] | [gate/up rows, SiLU * up] | [down rows, += residual]
//   then [LM head rows].
// Rows are claimed in chunks from a shared counter, so a thread slowed by another process takes fewer.
// RMSNorm of the residual (cheap) is computed by every thread for itself instead of adding a phase.
// Numerics follow HF's fp32 forward op by op; sums run in another order (vectorised), so results agree
// to rounding, not bit for bit, as between any two fp32 matmul kernels.
//
// KV cache: the CPU backend's layout (nbinfer/engine/cpu_attention.py), per layer K [Hk, D, S] then
// V [Hk, S, D]. The new token's K/V are written to slot tables[b][pos / bs] * bs + pos % bs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "attend.h"
#include "thread_pool.h"
#include "vec.h"

using namespace nbinfer;

namespace {

struct Layer {
    const float *ln1, *qkv, *qkv_b, *q_norm, *k_norm, *o, *o_b, *ln2, *gate_up, *gate_up_b, *down, *down_b;
};
constexpr int kLayerWeights = 12;
constexpr int kPhasesPerLayer = 5;

struct Model {
    int L, H, I, Hq, Hk, D, V;
    float eps;
    const float *embed, *norm, *lm_head;
    std::vector<Layer> layers;
};

constexpr int kRows = 32;    // GEMV rows claimed at a time

// y[b * ldy + (r - r0)] = W[r, :K] . x[b, :K] for rows r in [r0, r1), sequences b < B
void gemv(const float* __restrict Wt, int K, const float* __restrict x, int ldx, int B, int r0, int r1,
          float* __restrict y, int ldy) {
    int r = r0;
    for (; r + 4 <= r1; r += 4) {
        const float* w0 = Wt + int64_t(r) * K;
        const float *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
        for (int b = 0; b < B; ++b) {
            const float* xb = x + int64_t(b) * ldx;
            vec a0 = {}, a1 = {}, a2 = {}, a3 = {};
            int k = 0;
            for (; k + W <= K; k += W) {
                const vec xv = load(xb + k);
                a0 += load(w0 + k) * xv;
                a1 += load(w1 + k) * xv;
                a2 += load(w2 + k) * xv;
                a3 += load(w3 + k) * xv;
            }
            float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
            for (; k < K; ++k) {
                s0 += w0[k] * xb[k];
                s1 += w1[k] * xb[k];
                s2 += w2[k] * xb[k];
                s3 += w3[k] * xb[k];
            }
            float* yb = y + int64_t(b) * ldy + (r - r0);
            yb[0] = s0, yb[1] = s1, yb[2] = s2, yb[3] = s3;
        }
    }
    for (; r < r1; ++r) {
        const float* w0 = Wt + int64_t(r) * K;
        for (int b = 0; b < B; ++b) {
            const float* xb = x + int64_t(b) * ldx;
            vec a0 = {};
            int k = 0;
            for (; k + W <= K; k += W) a0 += load(w0 + k) * load(xb + k);
            float s0 = hsum(a0);
            for (; k < K; ++k) s0 += w0[k] * xb[k];
            y[int64_t(b) * ldy + (r - r0)] = s0;
        }
    }
}

// out = weight * (x * rsqrt(mean(x^2) + eps)), as HF's LlamaRMSNorm in fp32
void rms_norm(const float* __restrict x, const float* __restrict w, int n, float eps, float* __restrict out) {
    vec acc = {};
    int i = 0;
    for (; i + W <= n; i += W) {
        const vec v = load(x + i);
        acc += v * v;
    }
    float ss = hsum(acc);
    for (; i < n; ++i) ss += x[i] * x[i];
    const float inv = 1.f / std::sqrt(ss / n + eps);
    for (i = 0; i < n; ++i) out[i] = w[i] * (x[i] * inv);
}

// HF's rotate-half RoPE on one head: x * cos + rotate_half(x) * sin (cos/sin rows of the table)
void rope(float* __restrict x, const float* __restrict c, const float* __restrict s, int D) {
    const int half = D / 2;
    for (int i = 0; i < half; ++i) {
        const float a = x[i], b = x[i + half];
        x[i] = a * c[i] - b * s[i];
        x[i + half] = b * c[i + half] + a * s[i + half];
    }
}

struct Step {
    const Model& m;
    int B;
    const int64_t* pos;
    float* kv;
    int64_t S;
    const int32_t* tables;
    int table_width;
    const int32_t* lens;
    int bs;
    const float *cos, *sin;
    float scale;
    float* logits;
    // shared activations
    float *resid, *qkv, *attn, *act;
    int lmax;

    void operator()(int, int) const {
        const int H = m.H, I = m.I, D = m.D, Hq = m.Hq, Hk = m.Hk, G = Hq / Hk;
        const int nqkv = (Hq + 2 * Hk) * D;
        std::vector<float> xn(size_t(B) * H), y(size_t(B) * 2 * kRows);
        std::vector<float> qbuf(size_t(G) * D), kbuf(D), sc(size_t(G) * lmax), acc(size_t(G) * D);
        auto normed = [&](const float* w) {
            for (int b = 0; b < B; ++b) rms_norm(resid + size_t(b) * H, w, H, m.eps, xn.data() + size_t(b) * H);
        };
        int slot = 0;
        for (int l = 0; l < m.L; ++l) {
            const Layer& w = m.layers[l];
            float* kc = kv + int64_t(l) * 2 * Hk * D * S;       // K [Hk, D, S]
            float* vc = kc + int64_t(Hk) * D * S;              // V [Hk, S, D]
            normed(w.ln1);
            for (int c; (c = pool().claim(slot) * kRows) < nqkv;) {
                const int r1 = std::min(nqkv, c + kRows);
                gemv(w.qkv, H, xn.data(), H, B, c, r1, y.data(), kRows);
                for (int b = 0; b < B; ++b)
                    for (int r = c; r < r1; ++r)
                        qkv[size_t(b) * nqkv + r] = y[size_t(b) * kRows + r - c] + (w.qkv_b ? w.qkv_b[r] : 0.f);
            }
            pool().barrier();
            ++slot;
            for (int item; (item = pool().claim(slot)) < B * Hk;) {
                const int b = item / Hk, h = item % Hk;
                const float* row = qkv + size_t(b) * nqkv;
                const float *c = cos + pos[b] * D, *s = sin + pos[b] * D;
                std::memcpy(qbuf.data(), row + size_t(h) * G * D, sizeof(float) * G * D);
                std::memcpy(kbuf.data(), row + size_t(Hq + h) * D, sizeof(float) * D);
                const float* v = row + size_t(Hq + Hk + h) * D;
                if (w.q_norm) {
                    for (int g = 0; g < G; ++g) rms_norm(qbuf.data() + g * D, w.q_norm, D, m.eps, qbuf.data() + g * D);
                    rms_norm(kbuf.data(), w.k_norm, D, m.eps, kbuf.data());
                }
                for (int g = 0; g < G; ++g) rope(qbuf.data() + g * D, c, s, D);
                rope(kbuf.data(), c, s, D);
                for (int i = 0; i < G * D; ++i) qbuf[i] *= scale;
                const int64_t at = int64_t(tables[size_t(b) * table_width + pos[b] / bs]) * bs + pos[b] % bs;
                float* kh = kc + int64_t(h) * D * S;
                float* vh = vc + int64_t(h) * S * D;
                for (int d = 0; d < D; ++d) kh[d * S + at] = kbuf[d];
                std::memcpy(vh + at * D, v, sizeof(float) * D);
                attend(qbuf.data(), kh, vh, tables + size_t(b) * table_width, lens[b], G, D, S, bs, sc.data(),
                       acc.data(), attn + size_t(b) * Hq * D + size_t(h) * G * D);
            }
            pool().barrier();
            ++slot;
            for (int c; (c = pool().claim(slot) * kRows) < H;) {
                const int r1 = std::min(H, c + kRows);
                gemv(w.o, Hq * D, attn, Hq * D, B, c, r1, y.data(), kRows);
                for (int b = 0; b < B; ++b)
                    for (int r = c; r < r1; ++r)
                        resid[size_t(b) * H + r] += y[size_t(b) * kRows + r - c] + (w.o_b ? w.o_b[r] : 0.f);
            }
            pool().barrier();
            ++slot;
            normed(w.ln2);
            for (int c; (c = pool().claim(slot) * (kRows / 2)) < I;) {   // gate rows c.., up rows I + c..
                const int j1 = std::min(I, c + kRows / 2), n = j1 - c;
                gemv(w.gate_up, H, xn.data(), H, B, c, j1, y.data(), kRows);
                gemv(w.gate_up, H, xn.data(), H, B, I + c, I + j1, y.data() + kRows / 2, kRows);
                for (int b = 0; b < B; ++b)
                    for (int j = 0; j < n; ++j) {
                        float g = y[size_t(b) * kRows + j], u = y[size_t(b) * kRows + kRows / 2 + j];
                        if (w.gate_up_b) g += w.gate_up_b[c + j], u += w.gate_up_b[I + c + j];
                        act[size_t(b) * I + c + j] = g / (1.f + std::exp(-g)) * u;
                    }
            }
            pool().barrier();
            ++slot;
            for (int c; (c = pool().claim(slot) * kRows) < H;) {
                const int r1 = std::min(H, c + kRows);
                gemv(w.down, I, act, I, B, c, r1, y.data(), kRows);
                for (int b = 0; b < B; ++b)
                    for (int r = c; r < r1; ++r)
                        resid[size_t(b) * H + r] += y[size_t(b) * kRows + r - c] + (w.down_b ? w.down_b[r] : 0.f);
            }
            pool().barrier();
            ++slot;
        }
        normed(m.norm);
        for (int c; (c = pool().claim(slot) * kRows) < m.V;) {
            const int r1 = std::min(m.V, c + kRows);
            gemv(m.lm_head, H, xn.data(), H, B, c, r1, logits + c, m.V);
        }
    }
};

}  // namespace

extern "C" int nbinfer_llama_max_layers() { return (ThreadPool::kCounters - 1) / kPhasesPerLayer; }

// dims: L, H, I, Hq, Hk, D, V. weights: embed [V, H], final norm [H], LM head [V, H], then per layer
// ln1, qkv [(Hq+2Hk)*D, H], qkv bias, q_norm [D], k_norm [D], o [H, Hq*D], o bias, ln2, gate_up [2I, H],
// gate_up bias, down [H, I], down bias (absent ones null).
extern "C" void* nbinfer_llama_new(const int32_t* dims, float eps, const float* const* weights) {
    auto* m = new Model{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], eps,
                        weights[0], weights[1], weights[2], {}};
    for (int l = 0; l < m->L; ++l) {
        const float* const* w = weights + 3 + l * kLayerWeights;
        m->layers.push_back({w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8], w[9], w[10], w[11]});
    }
    return m;
}

extern "C" void nbinfer_llama_free(void* model) { delete static_cast<Model*>(model); }

// One decode step for B sequences: ids/pos [B] (the new token and its position), tables [B, table_width],
// lens [B] (context length including the new token), cos/sin [positions, D]. logits [B, V] out.
extern "C" void nbinfer_llama_decode(const void* model, int B, const int64_t* ids, const int64_t* pos, float* kv,
                                     int64_t S, const int32_t* tables, int table_width, const int32_t* lens, int bs,
                                     const float* cos, const float* sin, float scale, float* logits, int nthreads) {
    const Model& m = *static_cast<const Model*>(model);
    int maxlen = 0;
    for (int b = 0; b < B; ++b) maxlen = std::max(maxlen, lens[b]);
    std::vector<float> resid(size_t(B) * m.H), qkv(size_t(B) * (m.Hq + 2 * m.Hk) * m.D);
    std::vector<float> attn(size_t(B) * m.Hq * m.D), act(size_t(B) * m.I);
    for (int b = 0; b < B; ++b)
        std::memcpy(resid.data() + size_t(b) * m.H, m.embed + ids[b] * m.H, sizeof(float) * m.H);
    const Step step{m, B, pos, kv, S, tables, table_width, lens, bs, cos, sin, scale, logits,
                    resid.data(), qkv.data(), attn.data(), act.data(), (maxlen + bs - 1) / bs * bs};
    pool().run(std::max(1, nthreads), step);
}
