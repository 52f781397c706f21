// A step of a Llama-family model on the CPU, fp32 or bf16 weights and KV cache (or int8 matrices, one
// fp32 scale per output row, beside either): the step's packed tokens (decode tokens, prefill chunks,
// both mixed) through every layer to the logits of the rows asked for, in one call (kernels/cpu_llama.py;
// the torch model in nbinfer/models/llama.py is the reference and runs every step this one does not).
//
// Why one call: a small step is hundreds of small ops. From the engine's thread each torch op pays
// dispatch and an OpenMP hand-off, and the matrix products, nearly all of the work, only reach memory
// bandwidth (one token) or arithmetic peak (a few dozen) with every core on them at once. Here the
// step is a sequence of phases run by the pool's threads (thread_pool.h), each ending when all its
// items are done:
//   per layer: [RMSNorm] [qkv rows] [per (token, KV head): q/k norm, RoPE, K/V into the cache]
//              [attention per (token, KV head)] [o rows, += residual] [RMSNorm] [gate/up rows, SiLU*up]
//              [down rows, += residual]
//   then [RMSNorm of the rows wanted] [LM head rows].
// Matrix rows are claimed two panels (32 rows with AVX2) at a time, so a thread slowed by another
// process takes fewer; each panel's weights are read once from memory for all tokens (matmul.h). A
// token attends to its sequence's context up to its own position, through the block table, after every new token's K/V is
// written: one kernel for decode tokens and prefill chunks alike.
// Numerics follow HF's fp32 forward op by op; sums run in another order (vectorised), so results agree
// to rounding, not bit for bit, as between any two fp32 matmul kernels. With bf16 weights and cache
// (vec.h) the activations and every sum stay fp32: only what is stored is bf16 (torch's bf16 forward
// rounds every activation to bf16 too, so this path is the closer of the two to fp32).
//
// KV cache: the CPU backend's layout (nbinfer/engine/attention/cpu_backend.py), per layer K [Hk, D, S] then
// V [Hk, S, D]; token t's K/V go to slot tables[seq][pos / bs] * bs + pos % bs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "attend.h"
#include "matmul.h"
#include "thread_pool.h"

using namespace nbinfer;

namespace {

// the matrices (qkv, o, gate_up, down) in the model's element type, the vectors in fp32
struct Layer {
    const float* ln1;
    const void* qkv;
    const float *qkv_b, *q_norm, *k_norm;
    const void* o;
    const float *o_b, *ln2;
    const void* gate_up;
    const float* gate_up_b;
    const void* down;
    const float* down_b;
    const float *qkv_s, *o_s, *gate_up_s, *down_s;   // int8 matrices' row scales (else null)
};
constexpr int kLayerWeights = 12;
constexpr int kSlotsPerLayer = 8;       // parallel phases per layer (ThreadPool slots)

enum class DType { f32 = 0, bf16 = 1, i8 = 2 };   // of the matrices; the embedding and KV cache: f32 or bf16

struct Model {
    int L, H, I, Hq, Hk, D, V;
    float eps;
    DType wtype, kvtype;
    const void* embed;
    const float* norm;
    const void* lm_head;
    const float* lm_head_s;
    std::vector<Layer> layers;
};

constexpr int kRows = 2 * PW;    // matrix rows claimed at a time: two panels (matmul.h), 32 with AVX2

// out[i * os] = weight * (x * rsqrt(mean(x^2) + eps)), as HF's LlamaRMSNorm in fp32 (os: the output's
// stride, a packed group's width when a matrix product reads it: matmul.h)
void rms_norm(const float* __restrict x, const float* __restrict w, int n, float eps, float* __restrict out,
              int os = 1) {
    gvec acc = {};
    int i = 0;
    for (; i + GW <= n; i += GW) {
        const gvec v = gload(x + i);
        acc += v * v;
    }
    float ss = ghsum(acc);
    for (; i < n; ++i) ss += x[i] * x[i];
    const float inv = 1.f / std::sqrt(ss / n + eps);
    for (i = 0; i < n; ++i) out[size_t(i) * os] = w[i] * (x[i] * inv);
}

// HF's rotate-half RoPE on one head: x * cos + rotate_half(x) * sin (cos/sin: the position's table rows)
void rope(float* __restrict x, const float* __restrict c, const float* __restrict s, int D) {
    const int half = D / 2;
    for (int i = 0; i < half; ++i) {
        const float a = x[i], b = x[i + half];
        x[i] = a * c[i] - b * s[i];
        x[i + half] = b * c[i + half] + a * s[i + half];
    }
}

// Wt: the matrices' element type (float, bf16 or int8); W: the embedding's and the KV cache's (float or bf16)
template <class Wt, class W>
struct Step {
    const Model& m;
    int T;
    const int64_t* pos;
    const int32_t* seq_of;
    W* kv;
    int64_t S;
    const int32_t* tables;
    int table_width, bs;
    const float *cos, *sin;
    float scale;
    int R;
    const int32_t* rows;
    float* logits;
    // shared activations
    float *resid, *xn, *qkv, *q, *attn, *act;
    int lmax;

    void operator()(int, int) const {
        const int H = m.H, I = m.I, D = m.D, Hq = m.Hq, Hk = m.Hk, G = Hq / Hk;
        const int nqkv = (Hq + 2 * Hk) * D, Ip = (I + PW - 1) / PW * PW;
        ThreadPool& p = pool();
        std::vector<float> y(size_t(std::max(T, R)) * kRows), sc(size_t(G) * lmax), acc(size_t(G) * D), o(size_t(G) * D);
        // xn: the norm's output, packed for the matrix products (matmul.h), as are attn and act
        auto normed = [&](int slot, const float* w) {
            p.parallel_for(slot, T, [&](int t) {
                rms_norm(resid + size_t(t) * H, w, H, m.eps, xn + packed_at(t, 0, H, T), packed_width(t, T));
            });
        };
        // out[t][r] (+)= bias[r] + W[r] . x[t], in chunks of kRows rows (kRows / PW panels)
        auto project = [&](int slot, const void* weight, const float* rscale, const float* bias, int N, int K,
                           const float* x, float* out, bool accumulate) {
            const Wt* P = static_cast<const Wt*>(weight);
            const int panels = (N + PW - 1) / PW, per = kRows / PW;
            p.parallel_for(slot, (panels + per - 1) / per, [&](int chunk) {
                const int p0 = chunk * per, p1 = std::min(panels, p0 + per), c = p0 * PW, r1 = std::min(N, p1 * PW);
                matmul_panels(P, K, x, T, p0, p1, y.data(), kRows);
                for (int t = 0; t < T; ++t)
                    for (int r = c; r < r1; ++r) {
                        const float v = y[size_t(t) * kRows + r - c] * (rscale ? rscale[r] : 1.f) + (bias ? bias[r] : 0.f);
                        float& dst = out[size_t(t) * N + r];
                        dst = accumulate ? dst + v : v;
                    }
            });
        };
        int slot = 0;
        for (int l = 0; l < m.L; ++l, slot += kSlotsPerLayer) {
            const Layer& w = m.layers[l];
            W* kc = kv + int64_t(l) * 2 * Hk * D * S;           // K [Hk, D, S]
            W* vc = kc + int64_t(Hk) * D * S;                  // V [Hk, S, D]
            normed(slot, w.ln1);
            project(slot + 1, w.qkv, w.qkv_s, w.qkv_b, nqkv, H, xn, qkv, false);
            p.parallel_for(slot + 2, T * Hk, [&](int item) {         // q/k norm, RoPE, K/V into the cache
                const int t = item / Hk, h = item % Hk;
                const float* row = qkv + size_t(t) * nqkv;
                const float *c = cos + pos[t] * D, *s = sin + pos[t] * D;
                float* qg = q + size_t(t) * Hq * D + size_t(h) * G * D;
                float k[1024];                                  // D <= 1024 (checked by the caller)
                std::memcpy(qg, row + size_t(h) * G * D, sizeof(float) * G * D);
                std::memcpy(k, row + size_t(Hq + h) * D, sizeof(float) * D);
                if (w.q_norm) {
                    for (int g = 0; g < G; ++g) rms_norm(qg + g * D, w.q_norm, D, m.eps, qg + g * D);
                    rms_norm(k, w.k_norm, D, m.eps, k);
                }
                for (int g = 0; g < G; ++g) rope(qg + g * D, c, s, D);
                rope(k, c, s, D);
                for (int i = 0; i < G * D; ++i) qg[i] *= scale;
                const int64_t at = int64_t(tables[size_t(seq_of[t]) * table_width + pos[t] / bs]) * bs + pos[t] % bs;
                W* kh = kc + int64_t(h) * D * S;
                for (int d = 0; d < D; ++d) kh[d * S + at] = from_f32<W>(k[d]);
                W* vh = vc + (int64_t(h) * S + at) * D;
                const float* vrow = row + size_t(Hq + Hk + h) * D;
                for (int d = 0; d < D; ++d) vh[d] = from_f32<W>(vrow[d]);
            });
            p.parallel_for(slot + 3, T * Hk, [&](int item) {         // attention over the context so far
                const int t = item / Hk, h = item % Hk;
                attend(q + size_t(t) * Hq * D + size_t(h) * G * D, kc + int64_t(h) * D * S, vc + int64_t(h) * S * D,
                       tables + size_t(seq_of[t]) * table_width, int(pos[t]) + 1, G, D, S, bs, sc.data(), acc.data(),
                       o.data());
                const int os = packed_width(t, T);
                float* dst = attn + packed_at(t, h * G * D, Hq * D, T);
                for (int i = 0; i < G * D; ++i) dst[size_t(i) * os] = o[i];
            });
            project(slot + 4, w.o, w.o_s, w.o_b, H, Hq * D, attn, resid, true);
            normed(slot + 5, w.ln2);
            // gate rows in panels [0, Ip / PW), up rows from panel Ip / PW (cpu_llama.py pads each to Ip)
            p.parallel_for(slot + 6, Ip / PW, [&](int panel) {
                const int c = panel * PW, n = std::min(I, c + PW) - c;
                const Wt* gu = static_cast<const Wt*>(w.gate_up);
                matmul_panels(gu, H, xn, T, panel, panel + 1, y.data(), kRows);
                matmul_panels(gu, H, xn, T, Ip / PW + panel, Ip / PW + panel + 1, y.data() + PW, kRows);
                for (int t = 0; t < T; ++t) {
                    float* dst = act + packed_at(t, c, I, T);
                    const int os = packed_width(t, T);
                    for (int j = 0; j < n; ++j) {
                        float g = y[size_t(t) * kRows + j], u = y[size_t(t) * kRows + PW + j];
                        if (w.gate_up_s) g *= w.gate_up_s[c + j], u *= w.gate_up_s[I + c + j];
                        if (w.gate_up_b) g += w.gate_up_b[c + j], u += w.gate_up_b[I + c + j];
                        dst[size_t(j) * os] = g / (1.f + std::exp(-g)) * u;
                    }
                }
            });
            project(slot + 7, w.down, w.down_s, w.down_b, H, I, act, resid, true);
        }
        p.parallel_for(slot, R, [&](int r) {
            rms_norm(resid + size_t(rows[r]) * H, m.norm, H, m.eps, xn + packed_at(r, 0, H, R), packed_width(r, R));
        });
        const int vpanels = (m.V + PW - 1) / PW, per = kRows / PW;
        p.parallel_for(slot + 1, R ? (vpanels + per - 1) / per : 0, [&](int chunk) {
            const int p0 = chunk * per, p1 = std::min(vpanels, p0 + per), c = p0 * PW, r1 = std::min(m.V, p1 * PW);
            matmul_panels(static_cast<const Wt*>(m.lm_head), H, xn, R, p0, p1, y.data(), kRows);
            for (int r = 0; r < R; ++r)
                for (int v = c; v < r1; ++v)
                    logits[size_t(r) * m.V + v] = y[size_t(r) * kRows + v - c] * (m.lm_head_s ? m.lm_head_s[v] : 1.f);
        });
    }
};

}  // namespace

extern "C" int nbinfer_llama_max_layers() { return (ThreadPool::kSlots - 2) / kSlotsPerLayer; }
extern "C" int nbinfer_panel_width() { return PW; }

// dims: L, H, I, Hq, Hk, D, V. weights: embed [V, H], final norm [H], LM head [V, H], then per layer
// ln1, qkv [(Hq+2Hk)*D, H], qkv bias, q_norm [D], k_norm [D], o [H, Hq*D], o bias, ln2, gate_up [2I, H],
// gate_up bias, down [H, I], down bias (absent ones null). The LM head and the four matrices per layer
// hold `wtype` elements (DType) packed in panels (matmul.h; kernels/cpu_llama.py packs them, gate_up as
// gate's panels then up's); the embedding `kvtype` elements, as the KV cache; the rest fp32. scales: in
// the same order, each int8 matrix's fp32 scale per row of the unpacked matrix (null elsewhere).
extern "C" void* nbinfer_llama_new(const int32_t* dims, float eps, const void* const* weights,
                                   const void* const* scales, int wtype, int kvtype) {
    auto f = [](const void* p) { return static_cast<const float*>(p); };
    auto* m = new Model{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], eps, DType(wtype), DType(kvtype),
                        weights[0], f(weights[1]), weights[2], f(scales[2]), {}};
    for (int l = 0; l < m->L; ++l) {
        const void* const* w = weights + 3 + l * kLayerWeights;
        const void* const* sc = scales + 3 + l * kLayerWeights;
        m->layers.push_back({f(w[0]), w[1], f(w[2]), f(w[3]), f(w[4]), w[5], f(w[6]), f(w[7]), w[8], f(w[9]), w[10],
                             f(w[11]), f(sc[1]), f(sc[5]), f(sc[8]), f(sc[10])});
    }
    return m;
}

extern "C" void nbinfer_llama_free(void* model) { delete static_cast<Model*>(model); }

namespace {
template <class Wt, class W>
void run_step(const Model& m, int T, const int64_t* ids, const int64_t* pos, const int32_t* seq_of, void* kvp, int64_t S,
              const int32_t* tables, int table_width, int bs, const float* cos, const float* sin, float scale, int R,
              const int32_t* rows, float* logits, int nthreads) {
    W* kv = static_cast<W*>(kvp);
    int64_t maxpos = 0;
    for (int t = 0; t < T; ++t) maxpos = std::max(maxpos, pos[t]);
    std::vector<float> resid(size_t(T) * m.H), xn(size_t(std::max(T, R)) * m.H);
    std::vector<float> qkv(size_t(T) * (m.Hq + 2 * m.Hk) * m.D), q(size_t(T) * m.Hq * m.D);
    std::vector<float> attn(size_t(T) * m.Hq * m.D), act(size_t(T) * m.I);
    const W* embed = static_cast<const W*>(m.embed);
    for (int t = 0; t < T; ++t)
        for (int i = 0; i < m.H; ++i) resid[size_t(t) * m.H + i] = to_f32(embed[ids[t] * m.H + i]);
    const int lmax = int((maxpos + 1 + bs - 1) / bs * bs);
    const Step<Wt, W> step{m, T, pos, seq_of, kv, S, tables, table_width, bs, cos, sin, scale, R, rows, logits,
                           resid.data(), xn.data(), qkv.data(), q.data(), attn.data(), act.data(), lmax};
    pool().run(std::max(1, nthreads), step);
}

template <class W>
void run_with_cache(const Model& m, int T, const int64_t* ids, const int64_t* pos, const int32_t* seq_of, void* kv,
                    int64_t S, const int32_t* tables, int table_width, int bs, const float* cos, const float* sin,
                    float scale, int R, const int32_t* rows, float* logits, int nthreads) {
    if (m.wtype == DType::i8)
        run_step<int8_t, W>(m, T, ids, pos, seq_of, kv, S, tables, table_width, bs, cos, sin, scale, R, rows, logits,
                            nthreads);
    else
        run_step<W, W>(m, T, ids, pos, seq_of, kv, S, tables, table_width, bs, cos, sin, scale, R, rows, logits,
                       nthreads);
}
}  // namespace

// One step over T packed tokens: ids/pos/seq_of [T] (token, its position, its sequence's row in
// tables [*, table_width]); every earlier position of each sequence is already in the cache (of the
// model's dtype) or among these tokens. cos/sin [positions, D]. logits [R, V] for the tokens rows[0..R).
extern "C" void nbinfer_llama_step(const void* model, int T, const int64_t* ids, const int64_t* pos,
                                   const int32_t* seq_of, void* kv, int64_t S, const int32_t* tables, int table_width,
                                   int bs, const float* cos, const float* sin, float scale, int R, const int32_t* rows,
                                   float* logits, int nthreads) {
    const Model& m = *static_cast<const Model*>(model);
    if (m.kvtype == DType::bf16)
        run_with_cache<bf16>(m, T, ids, pos, seq_of, kv, S, tables, table_width, bs, cos, sin, scale, R, rows, logits,
                             nthreads);
    else
        run_with_cache<float>(m, T, ids, pos, seq_of, kv, S, tables, table_width, bs, cos, sin, scale, R, rows, logits,
                              nthreads);
}
