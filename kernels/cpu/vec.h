// Vector helpers shared by the CPU kernels: GCC vector extensions, so -march=native picks the ISA
// (AVX-512: one register per vec; AVX2: the compiler splits it in two; elsewhere: whatever it has).
#pragma once
#include <cstring>

namespace nbinfer {

constexpr int W = 16;    // floats per vec
typedef float vec __attribute__((vector_size(W * sizeof(float)), aligned(4)));

inline vec load(const float* p) { vec r; std::memcpy(&r, p, sizeof r); return r; }
inline void store(float* p, vec x) { std::memcpy(p, &x, sizeof x); }
inline float hsum(vec x) {
    float s = 0.f;
    for (int i = 0; i < W; ++i) s += x[i];
    return s;
}

}  // namespace nbinfer
