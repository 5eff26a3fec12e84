// Per-Gaussian math shared by the C++ CPU and the CUDA kernels: EWA projection and SH colour, forward and
// hand-derived backward. Mirrors cuda_ext/reference.py line for line (that file is the oracle); the
// backward is checked against torch autograd of the reference in tests/test_kernels_cpu.py.
#pragma once
#include <cmath>

#if defined(__CUDACC__)
#define AA_HD __host__ __device__ __forceinline__
#else
#define AA_HD inline
#endif

namespace aa {

constexpr float ALPHA_MAX = 0.99f;         // 3DGS: alpha = min(0.99, opacity * exp(-power))
constexpr float ALPHA_MIN = 1.0f / 255.0f;  // splats under this alpha are skipped
constexpr float T_MIN = 1e-4f;              // a pixel stops before its transmittance would fall below this
constexpr float RADIUS_SIGMAS = 3.33f;      // 0.5 * 3.33^2 = ln(255): where opacity 1 falls below 1/255

// One pinhole camera: world->camera rotation R (row-major) and translation t, intrinsics, image size.
struct Camera {
  float R[9], t[3];
  float fx, fy, cx, cy;
  int width, height;
  float lo_x, hi_x, lo_y, hi_y;  // x/z and y/z limits of the Jacobian: 1.3x the frustum (3DGS, gsplat)
};

AA_HD Camera make_camera(const float* viewmat /*[4,4]*/, const float* K /*[3,3]*/, int width, int height) {
  Camera c;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) c.R[3 * i + j] = viewmat[4 * i + j];
    c.t[i] = viewmat[4 * i + 3];
  }
  c.fx = K[0]; c.fy = K[4]; c.cx = K[2]; c.cy = K[5];
  c.width = width; c.height = height;
  const float tan_fovx = 0.5f * width / c.fx, tan_fovy = 0.5f * height / c.fy;
  c.lo_x = -(c.cx / c.fx + 0.3f * tan_fovx); c.hi_x = (width - c.cx) / c.fx + 0.3f * tan_fovx;
  c.lo_y = -(c.cy / c.fy + 0.3f * tan_fovy); c.hi_y = (height - c.cy) / c.fy + 0.3f * tan_fovy;
  return c;
}

// Unit quaternion n (wxyz) of q, and |q| (clamped like F.normalize).
AA_HD float normalize4(const float* q, float* n) {
  float len = sqrtf(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  float inv = 1.0f / fmaxf(len, 1e-12f);
  for (int i = 0; i < 4; ++i) n[i] = q[i] * inv;
  return fmaxf(len, 1e-12f);
}

AA_HD void rotmat(const float* n /*unit wxyz*/, float* R /*[9]*/) {
  float w = n[0], x = n[1], y = n[2], z = n[3];
  R[0] = 1 - 2 * (y * y + z * z); R[1] = 2 * (x * y - w * z);     R[2] = 2 * (x * z + w * y);
  R[3] = 2 * (x * y + w * z);     R[4] = 1 - 2 * (x * x + z * z); R[5] = 2 * (y * z - w * x);
  R[6] = 2 * (x * z - w * y);     R[7] = 2 * (y * z + w * x);     R[8] = 1 - 2 * (x * x + y * y);
}

// Forward intermediates of one projection, kept for the backward.
struct ProjState {
  float t[3];       // camera-space mean
  float Rq[9];      // rotation of the Gaussian
  float M[9];       // Rq * diag(scale)
  float Sc[9];      // camera-space covariance
  float J[6];       // 2x3 Jacobian (clamped direction)
  bool clamp_x, clamp_y;
  float a, b, c;    // dilated 2D covariance [[a, b], [b, c]]
  float det;
};

// Projects one Gaussian. Returns false (culled) outside near/far, for a degenerate covariance, or when
// its box misses the image; then the caller writes zeros and radius 0, as gsplat does.
AA_HD bool project_forward(const float* mean, const float* quat, const float* scale, const Camera& cam,
                           float eps2d, float near_plane, float far_plane, ProjState& s, float* mean2d,
                           float* depth, float* conic, int* radius) {
  const float* R = cam.R;
  for (int i = 0; i < 3; ++i) s.t[i] = R[3 * i] * mean[0] + R[3 * i + 1] * mean[1] + R[3 * i + 2] * mean[2] + cam.t[i];
  float tx = s.t[0], ty = s.t[1], tz = s.t[2];
  if (!(tz > near_plane && tz < far_plane)) return false;

  float n[4];
  normalize4(quat, n);
  rotmat(n, s.Rq);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) s.M[3 * i + j] = s.Rq[3 * i + j] * scale[j];
  float Sig[9], RS[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      Sig[3 * i + j] = s.M[3 * i] * s.M[3 * j] + s.M[3 * i + 1] * s.M[3 * j + 1] + s.M[3 * i + 2] * s.M[3 * j + 2];
  for (int i = 0; i < 3; ++i)  // RS = R * Sig
    for (int j = 0; j < 3; ++j) RS[3 * i + j] = R[3 * i] * Sig[j] + R[3 * i + 1] * Sig[3 + j] + R[3 * i + 2] * Sig[6 + j];
  for (int i = 0; i < 3; ++i)  // Sc = RS * R^T
    for (int j = 0; j < 3; ++j) s.Sc[3 * i + j] = RS[3 * i] * R[3 * j] + RS[3 * i + 1] * R[3 * j + 1] + RS[3 * i + 2] * R[3 * j + 2];

  // Jacobian with the view direction clamped to 1.3x the frustum (3DGS, gsplat).
  const float iz = 1.f / tz, iz2 = iz * iz;
  float rx = tx * iz, ry = ty * iz;
  s.clamp_x = rx < cam.lo_x || rx > cam.hi_x;
  s.clamp_y = ry < cam.lo_y || ry > cam.hi_y;
  float txc = tz * fminf(fmaxf(rx, cam.lo_x), cam.hi_x), tyc = tz * fminf(fmaxf(ry, cam.lo_y), cam.hi_y);
  s.J[0] = cam.fx * iz; s.J[1] = 0.f; s.J[2] = -cam.fx * txc * iz2;
  s.J[3] = 0.f; s.J[4] = cam.fy * iz; s.J[5] = -cam.fy * tyc * iz2;

  float JS[6];  // J * Sc
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) JS[3 * i + j] = s.J[3 * i] * s.Sc[j] + s.J[3 * i + 1] * s.Sc[3 + j] + s.J[3 * i + 2] * s.Sc[6 + j];
  float c00 = JS[0] * s.J[0] + JS[1] * s.J[1] + JS[2] * s.J[2];
  float c01 = JS[0] * s.J[3] + JS[1] * s.J[4] + JS[2] * s.J[5];
  float c10 = JS[3] * s.J[0] + JS[4] * s.J[1] + JS[5] * s.J[2];
  float c11 = JS[3] * s.J[3] + JS[4] * s.J[4] + JS[5] * s.J[5];
  s.a = c00 + eps2d; s.b = 0.5f * (c01 + c10); s.c = c11 + eps2d;
  float det = s.a * s.c - s.b * s.b;
  if (!(det > 0.f)) return false;
  s.det = fmaxf(det, 1e-10f);
  const float idet = 1.f / s.det;
  conic[0] = s.c * idet; conic[1] = -s.b * idet; conic[2] = s.a * idet;
  mean2d[0] = cam.fx * rx + cam.cx;
  mean2d[1] = cam.fy * ry + cam.cy;
  *depth = tz;
  radius[0] = (int)ceilf(RADIUS_SIGMAS * sqrtf(s.a));
  radius[1] = (int)ceilf(RADIUS_SIGMAS * sqrtf(s.c));
  if (mean2d[0] + radius[0] <= 0.f || mean2d[0] - radius[0] >= cam.width || mean2d[1] + radius[1] <= 0.f ||
      mean2d[1] - radius[1] >= cam.height)
    return false;
  return true;
}

// Backward of project_forward for a kept Gaussian: accumulates into v_mean[3], v_quat[4], v_scale[3].
AA_HD void project_backward(const float* quat, const float* scale, const Camera& cam, const ProjState& s,
                            const float* v_mean2d, float v_depth, const float* v_conic, float* v_mean,
                            float* v_quat, float* v_scale) {
  const float* R = cam.R;
  float tx = s.t[0], ty = s.t[1], tz = s.t[2];
  float a = s.a, b = s.b, c = s.c, det = s.det, det2 = det * det;
  float g0 = v_conic[0], g1 = v_conic[1], g2 = v_conic[2];
  // conic = (c, -b, a) / det  ->  the dilated covariance (eps2d has no gradient)
  float va = (-c * c * g0 + b * c * g1 - b * b * g2) / det2;
  float vb = (2 * b * c * g0 - (a * c + b * b) * g1 + 2 * a * b * g2) / det2;
  float vc = (-b * b * g0 + a * b * g1 - a * a * g2) / det2;
  float V[4] = {va, 0.5f * vb, 0.5f * vb, vc};  // d/d cov2d, symmetric

  // cov2d = J Sc J^T  ->  v_Sc = J^T V J, v_J = 2 V J Sc
  float VJ[6];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) VJ[3 * i + j] = V[2 * i] * s.J[j] + V[2 * i + 1] * s.J[3 + j];
  float vSc[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) vSc[3 * i + j] = s.J[i] * VJ[j] + s.J[3 + i] * VJ[3 + j];
  float vJ[6];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      vJ[3 * i + j] = 2.f * (VJ[3 * i] * s.Sc[j] + VJ[3 * i + 1] * s.Sc[3 + j] + VJ[3 * i + 2] * s.Sc[6 + j]);

  // J(t), mean2d(t), depth = tz  ->  v_t
  float fx = cam.fx, fy = cam.fy, tz2 = tz * tz, tz3 = tz2 * tz;
  float txc = s.clamp_x ? -s.J[2] * tz2 / fx : tx;  // recover the clamped direction times tz
  float tyc = s.clamp_y ? -s.J[5] * tz2 / fy : ty;
  float dtxc_dtx = s.clamp_x ? 0.f : 1.f, dtxc_dtz = s.clamp_x ? txc / tz : 0.f;
  float dtyc_dty = s.clamp_y ? 0.f : 1.f, dtyc_dtz = s.clamp_y ? tyc / tz : 0.f;
  float vt[3];
  vt[0] = v_mean2d[0] * fx / tz + vJ[2] * (-fx / tz2) * dtxc_dtx;
  vt[1] = v_mean2d[1] * fy / tz + vJ[5] * (-fy / tz2) * dtyc_dty;
  vt[2] = -v_mean2d[0] * fx * tx / tz2 - v_mean2d[1] * fy * ty / tz2 + v_depth - vJ[0] * fx / tz2 -
          vJ[4] * fy / tz2 + vJ[2] * (-fx * dtxc_dtz / tz2 + 2.f * fx * txc / tz3) +
          vJ[5] * (-fy * dtyc_dtz / tz2 + 2.f * fy * tyc / tz3);
  for (int j = 0; j < 3; ++j) v_mean[j] += R[j] * vt[0] + R[3 + j] * vt[1] + R[6 + j] * vt[2];

  // Sc = R Sig R^T -> v_Sig = R^T v_Sc R;  Sig = M M^T -> v_M = 2 v_Sig M
  float T1[9], vSig[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) T1[3 * i + j] = vSc[3 * i] * R[j] + vSc[3 * i + 1] * R[3 + j] + vSc[3 * i + 2] * R[6 + j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) vSig[3 * i + j] = R[i] * T1[j] + R[3 + i] * T1[3 + j] + R[6 + i] * T1[6 + j];
  float vM[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      vM[3 * i + j] = (vSig[3 * i] + vSig[i]) * s.M[j] + (vSig[3 * i + 1] + vSig[3 + i]) * s.M[3 + j] +
                      (vSig[3 * i + 2] + vSig[6 + i]) * s.M[6 + j];
  // M = Rq diag(scale)
  float vR[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      vR[3 * i + j] = vM[3 * i + j] * scale[j];
      v_scale[j] += vM[3 * i + j] * s.Rq[3 * i + j];
    }
  // Rq(n) -> v_n, then through the normalisation n = q / |q|
  float n[4];
  float len = normalize4(quat, n);
  float w = n[0], x = n[1], y = n[2], z = n[3];
  float vn[4];
  vn[0] = 2.f * (-z * vR[1] + y * vR[2] + z * vR[3] - x * vR[5] - y * vR[6] + x * vR[7]);
  vn[1] = 2.f * (y * vR[1] + z * vR[2] + y * vR[3] - 2.f * x * vR[4] - w * vR[5] + z * vR[6] + w * vR[7] - 2.f * x * vR[8]);
  vn[2] = 2.f * (-2.f * y * vR[0] + x * vR[1] + w * vR[2] + x * vR[3] + z * vR[5] - w * vR[6] + z * vR[7] - 2.f * y * vR[8]);
  vn[3] = 2.f * (-2.f * z * vR[0] - w * vR[1] + x * vR[2] + w * vR[3] - 2.f * z * vR[4] + y * vR[5] + x * vR[6] + y * vR[7]);
  float dot = vn[0] * n[0] + vn[1] * n[1] + vn[2] * n[2] + vn[3] * n[3];
  for (int i = 0; i < 4; ++i) v_quat[i] += (vn[i] - n[i] * dot) / len;
}

// ------------------------------------------------------------------------------ spherical harmonics
// Real SH constants up to degree 3 (3DGS / gsplat convention, Sloan 2013). Scalars, not arrays: nvcc treats
// a namespace-scope constexpr array as host-only data.
constexpr float SH_C0 = 0.28209479177387814f;
constexpr float SH_C1 = 0.4886025119029199f;
constexpr float SH_C2_0 = 1.0925484305920792f, SH_C2_1 = -1.0925484305920792f, SH_C2_2 = 0.31539156525252005f,
                SH_C2_3 = -1.0925484305920792f, SH_C2_4 = 0.5462742152960396f;
constexpr float SH_C3_0 = -0.5900435899266435f, SH_C3_1 = 2.890611442640554f, SH_C3_2 = -0.4570457994644658f,
                SH_C3_3 = 0.3731763325901154f, SH_C3_4 = -0.4570457994644658f, SH_C3_5 = 1.445305721320277f,
                SH_C3_6 = -0.5900435899266435f;

// Basis values b[(degree+1)^2] and, if db != nullptr, their gradients db[k*3 + {x,y,z}] at unit dir n.
AA_HD void sh_basis(int degree, const float* n, float* bs, float* db) {
  float x = n[0], y = n[1], z = n[2];
  bs[0] = SH_C0;
  if (db) db[0] = db[1] = db[2] = 0.f;
  if (degree < 1) return;
  bs[1] = -SH_C1 * y; bs[2] = SH_C1 * z; bs[3] = -SH_C1 * x;
  if (db) {
    float d[9] = {0, -SH_C1, 0, 0, 0, SH_C1, -SH_C1, 0, 0};
    for (int i = 0; i < 9; ++i) db[3 + i] = d[i];
  }
  if (degree < 2) return;
  float xx = x * x, yy = y * y, zz = z * z;
  bs[4] = SH_C2_0 * x * y; bs[5] = SH_C2_1 * y * z; bs[6] = SH_C2_2 * (2 * zz - xx - yy);
  bs[7] = SH_C2_3 * x * z; bs[8] = SH_C2_4 * (xx - yy);
  if (db) {
    float d[15] = {SH_C2_0 * y, SH_C2_0 * x, 0,
                   0, SH_C2_1 * z, SH_C2_1 * y,
                   -2 * SH_C2_2 * x, -2 * SH_C2_2 * y, 4 * SH_C2_2 * z,
                   SH_C2_3 * z, 0, SH_C2_3 * x,
                   2 * SH_C2_4 * x, -2 * SH_C2_4 * y, 0};
    for (int i = 0; i < 15; ++i) db[12 + i] = d[i];
  }
  if (degree < 3) return;
  bs[9] = SH_C3_0 * y * (3 * xx - yy); bs[10] = SH_C3_1 * x * y * z; bs[11] = SH_C3_2 * y * (4 * zz - xx - yy);
  bs[12] = SH_C3_3 * z * (2 * zz - 3 * xx - 3 * yy); bs[13] = SH_C3_4 * x * (4 * zz - xx - yy);
  bs[14] = SH_C3_5 * z * (xx - yy); bs[15] = SH_C3_6 * x * (xx - 3 * yy);
  if (db) {
    float d[21] = {6 * SH_C3_0 * x * y, SH_C3_0 * (3 * xx - 3 * yy), 0,
                   SH_C3_1 * y * z, SH_C3_1 * x * z, SH_C3_1 * x * y,
                   -2 * SH_C3_2 * x * y, SH_C3_2 * (4 * zz - xx - 3 * yy), 8 * SH_C3_2 * y * z,
                   -6 * SH_C3_3 * x * z, -6 * SH_C3_3 * y * z, SH_C3_3 * (6 * zz - 3 * xx - 3 * yy),
                   SH_C3_4 * (4 * zz - 3 * xx - yy), -2 * SH_C3_4 * x * y, 8 * SH_C3_4 * x * z,
                   2 * SH_C3_5 * x * z, -2 * SH_C3_5 * y * z, SH_C3_5 * (xx - yy),
                   SH_C3_6 * (3 * xx - 3 * yy), -6 * SH_C3_6 * x * y, 0};
    for (int i = 0; i < 21; ++i) db[27 + i] = d[i];
  }
}

// colour[3] = sum_k b_k(dir / |dir|) * coeffs[k][3]; coeffs is [K, 3] with K >= (degree+1)^2.
AA_HD void sh_forward(int degree, const float* dir, const float* coeffs, float* color) {
  float len = fmaxf(sqrtf(dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]), 1e-12f);
  float n[3] = {dir[0] / len, dir[1] / len, dir[2] / len};
  float bs[16];
  sh_basis(degree, n, bs, nullptr);
  int nb = (degree + 1) * (degree + 1);
  for (int ch = 0; ch < 3; ++ch) {
    float acc = 0.f;
    for (int k = 0; k < nb; ++k) acc += bs[k] * coeffs[3 * k + ch];
    color[ch] = acc;
  }
}

// Writes v_coeffs[K*3] (zeros past the used bands) and v_dir[3].
AA_HD void sh_backward(int degree, int K, const float* dir, const float* coeffs, const float* v_color,
                       float* v_dir, float* v_coeffs) {
  float len = fmaxf(sqrtf(dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]), 1e-12f);
  float n[3] = {dir[0] / len, dir[1] / len, dir[2] / len};
  float bs[16], db[48];
  sh_basis(degree, n, bs, db);
  int nb = (degree + 1) * (degree + 1);
  float vn[3] = {0.f, 0.f, 0.f};
  for (int k = 0; k < K; ++k)
    for (int ch = 0; ch < 3; ++ch) v_coeffs[3 * k + ch] = k < nb ? bs[k] * v_color[ch] : 0.f;
  for (int k = 0; k < nb; ++k) {
    float g = coeffs[3 * k] * v_color[0] + coeffs[3 * k + 1] * v_color[1] + coeffs[3 * k + 2] * v_color[2];
    for (int i = 0; i < 3; ++i) vn[i] += db[3 * k + i] * g;
  }
  float dot = vn[0] * n[0] + vn[1] * n[1] + vn[2] * n[2];
  for (int i = 0; i < 3; ++i) v_dir[i] = (vn[i] - n[i] * dot) / len;
}

}  // namespace aa
