// An 8-lane float vector for the compositor: AVX2+FMA intrinsics where the compiler targets them, otherwise
// plain arrays with the same operation order (the scalar twin rounds identically except in fast_exp's
// floor/convert, which agree for the inputs used here).
#pragma once
#include "common.h"

namespace aa::cpu {

constexpr int LANES = 8;  // floats per vector

#ifdef AA_AVX2
struct F8 {
  __m256 v;
  static F8 load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static F8 set1(float x) { return {_mm256_set1_ps(x)}; }
  static F8 iota() { return {_mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7)}; }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
};
struct M8 { __m256 v; };
inline F8 operator+(F8 a, F8 b) { return {_mm256_add_ps(a.v, b.v)}; }
inline F8 operator-(F8 a, F8 b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline F8 operator*(F8 a, F8 b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline F8 operator/(F8 a, F8 b) { return {_mm256_div_ps(a.v, b.v)}; }
inline F8 fma(F8 a, F8 b, F8 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline F8 min(F8 a, F8 b) { return {_mm256_min_ps(a.v, b.v)}; }
inline F8 exp_neg(F8 x) { return {fast_exp8(_mm256_sub_ps(_mm256_setzero_ps(), x.v))}; }  // exp(-x)
inline M8 operator<(F8 a, F8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
inline M8 operator>=(F8 a, F8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ)}; }
inline M8 operator>(F8 a, F8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
inline F8 max(F8 a, F8 b) { return {_mm256_max_ps(a.v, b.v)}; }
inline F8 sqrt(F8 a) { return {_mm256_sqrt_ps(a.v)}; }
inline F8 ceil(F8 a) { return {_mm256_ceil_ps(a.v)}; }
inline M8 operator<=(F8 a, F8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)}; }
inline M8 operator&(M8 a, M8 b) { return {_mm256_and_ps(a.v, b.v)}; }
inline M8 operator|(M8 a, M8 b) { return {_mm256_or_ps(a.v, b.v)}; }
inline M8 andnot(M8 a, M8 b) { return {_mm256_andnot_ps(b.v, a.v)}; }  // a & ~b
inline int bits(M8 m) { return _mm256_movemask_ps(m.v); }
inline F8 select(M8 m, F8 a, F8 b) { return {_mm256_blendv_ps(b.v, a.v, m.v)}; }  // m ? a : b
inline float hsum(F8 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
#else
struct F8 {
  float v[8];
  static F8 load(const float* p) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = p[i]; return r; }
  static F8 set1(float x) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = x; return r; }
  static F8 iota() { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = (float)i; return r; }
  void store(float* p) const { for (int i = 0; i < 8; ++i) p[i] = v[i]; }
};
struct M8 { bool v[8]; };
#define AA_F8_BINOP(OP)                                                              \
  inline F8 operator OP(F8 a, F8 b) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] OP b.v[i]; return r; }
AA_F8_BINOP(+) AA_F8_BINOP(-) AA_F8_BINOP(*) AA_F8_BINOP(/)
#undef AA_F8_BINOP
#define AA_F8_CMP(OP)                                                                \
  inline M8 operator OP(F8 a, F8 b) { M8 r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] OP b.v[i]; return r; }
AA_F8_CMP(<) AA_F8_CMP(>=) AA_F8_CMP(>) AA_F8_CMP(<=)
#undef AA_F8_CMP
inline F8 fma(F8 a, F8 b, F8 c) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = std::fma(a.v[i], b.v[i], c.v[i]); return r; }
inline F8 min(F8 a, F8 b) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = std::min(a.v[i], b.v[i]); return r; }
inline F8 exp_neg(F8 x) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = fast_exp(-x.v[i]); return r; }
inline F8 max(F8 a, F8 b) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = std::max(a.v[i], b.v[i]); return r; }
inline F8 sqrt(F8 a) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = std::sqrt(a.v[i]); return r; }
inline F8 ceil(F8 a) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = std::ceil(a.v[i]); return r; }
inline M8 operator&(M8 a, M8 b) { M8 r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] && b.v[i]; return r; }
inline M8 operator|(M8 a, M8 b) { M8 r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] || b.v[i]; return r; }
inline M8 andnot(M8 a, M8 b) { M8 r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] && !b.v[i]; return r; }
inline int bits(M8 m) { int b = 0; for (int i = 0; i < 8; ++i) b |= (int)m.v[i] << i; return b; }
inline F8 select(M8 m, F8 a, F8 b) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = m.v[i] ? a.v[i] : b.v[i]; return r; }
inline float hsum(F8 a) { float s = 0.f; for (int i = 0; i < 8; ++i) s += a.v[i]; return s; }
#endif

}  // namespace aa::cpu
