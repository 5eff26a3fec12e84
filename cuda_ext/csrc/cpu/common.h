// Helpers shared by the CPU kernels: dynamic tile scheduling over torch's thread pool, denormal flushing,
// and a fast exp (scalar and 8-wide AVX2 twins that round the same way).
#pragma once
#include <ATen/Parallel.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define AA_AVX2 1
#endif
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace aa::cpu {

// Flush denormals to zero while a kernel runs on this thread (products of tiny transmittances otherwise
// fall into microcode-assisted slow paths); restores the previous mode on exit.
struct DenormalGuard {
#if defined(__SSE__)
  unsigned int saved = _mm_getcsr();
  DenormalGuard() { _mm_setcsr(saved | 0x8040); }  // FTZ | DAZ
  ~DenormalGuard() { _mm_setcsr(saved); }
#endif
};

// Runs fn(item, worker) for item in [0, n) on torch's intra-op threads, handing items out one at a time
// (tiles differ a lot in cost, so a static split leaves a core idle). worker < num_workers(n).
inline int num_workers(int64_t n) {
  return (int)std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n));
}
template <class F>
void parallel_dynamic(int64_t n, F&& fn) {
  const int nw = num_workers(n);
  std::atomic<int64_t> next{0};
  at::parallel_for(0, nw, 1, [&](int64_t b, int64_t e) {
    DenormalGuard guard;
    for (int64_t w = b; w < e; ++w)
      for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i, (int)w);
  });
}

// exp(x) for x <= 0 to ~2e-7 relative: Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, degree-6 Taylor.
constexpr float LOG2E = 1.44269504088896341f, LN2_HI = 0.693145751953125f, LN2_LO = 1.428606765330187e-06f;
constexpr float P2 = 0.5f, P3 = 1.f / 6.f, P4 = 1.f / 24.f, P5 = 1.f / 120.f, P6 = 1.f / 720.f;

inline float fast_exp(float x) {
  x = std::max(x, -87.0f);
  float k = std::floor(std::fma(x, LOG2E, 0.5f));
  float r = std::fma(-k, LN2_LO, std::fma(-k, LN2_HI, x));
  float p = std::fma(r, P6, P5);
  p = std::fma(p, r, P4); p = std::fma(p, r, P3); p = std::fma(p, r, P2);
  p = std::fma(p, r, 1.f); p = std::fma(p, r, 1.f);
  int32_t bits = ((int32_t)k + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

#ifdef AA_AVX2
inline __m256 fast_exp8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  __m256 k = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), _mm256_set1_ps(0.5f)));
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_LO), _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_HI), x));
  __m256 p = _mm256_fmadd_ps(r, _mm256_set1_ps(P6), _mm256_set1_ps(P5));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4)); p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2)); p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}
#endif

}  // namespace aa::cpu
