// The CPU kernels' vector type and the element types they read: fp32, bf16 (weights and KV cache
// stored as the top 16 bits of an fp32, as torch.bfloat16 stores them) and int8 (quantized weights). Arithmetic is always fp32:
// a bf16 vector is widened on load (zero-extend, shift left 16: exact), so bf16 costs no precision
// in the sums, only in what is stored, and halves the bytes a memory-bound decode step reads.
#pragma once
#include <cstdint>
#include <cstring>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace nbinfer {

#if defined(__AVX512F__)
constexpr int GW = 16;   // floats per register
#else
constexpr int GW = 8;
#endif
typedef float gvec __attribute__((vector_size(GW * sizeof(float))));
typedef float gvec_u __attribute__((vector_size(GW * sizeof(float)), aligned(4), may_alias));
typedef uint32_t uvec __attribute__((vector_size(GW * sizeof(uint32_t))));
typedef uint16_t hvec_u __attribute__((vector_size(GW * sizeof(uint16_t)), aligned(2), may_alias));

struct bf16 {
    uint16_t bits;
};

// An unaligned load through a may_alias type: one vmovups. (memcpy into the vector was lowered
// through the stack here, a store and a reload per operand: 8x slower.)
inline gvec gload(const float* p) { return *reinterpret_cast<const gvec_u*>(p); }
// GW bf16 values widened to fp32: one vpmovzxwd and one vpslld
inline gvec gload(const bf16* p) {
    return (gvec)(__builtin_convertvector(*reinterpret_cast<const hvec_u*>(p), uvec) << 16);
}

// GW int8 values as fp32 (int8 weights, whose per-row scale the caller applies): vpmovsxbd, vcvtdq2ps
// (GCC scalarises __builtin_convertvector from int8 lanes: a byte at a time, measured 6x slower)
inline gvec gload(const int8_t* p) {
#if defined(__AVX512F__)
    return (gvec)_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#elif defined(__AVX2__)
    return (gvec)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#else
    gvec v;
    for (int i = 0; i < GW; ++i) v[i] = float(p[i]);
    return v;
#endif
}

inline float ghsum(gvec x) {
    float s = 0.f;
    for (int i = 0; i < GW; ++i) s += x[i];
    return s;
}

inline float to_f32(float x) { return x; }
inline float to_f32(bf16 x) {
    const uint32_t u = uint32_t(x.bits) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// fp32 -> element type, bf16 rounded to nearest even as torch's .to(torch.bfloat16) does
template <class T> inline T from_f32(float x);
template <> inline float from_f32<float>(float x) { return x; }
template <> inline bf16 from_f32<bf16>(float x) {
    uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};   // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return bf16{uint16_t(u >> 16)};
}

}  // namespace nbinfer
