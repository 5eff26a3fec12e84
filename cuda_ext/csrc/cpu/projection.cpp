// EWA projection on the CPU: one (camera, Gaussian) pair per item, math from ../math.h.
#include "../math.h"
#include "../ops.h"
#include "vec8.h"

namespace aa::cpu {
namespace {

// project_forward (../math.h) for 8 Gaussians at once: the same steps with masks instead of early returns.
// Inputs are gathered to struct-of-arrays; culled lanes are written as zeros with radius 0.
void project8(const float* m, const float* q, const float* sc, const Camera& cam, float eps2d, float near_plane,
              float far_plane, int64_t n0, int64_t i0, int* rad, float* m2, float* dep, float* con) {
  float in[10][LANES];  // mx my mz qw qx qy qz sx sy sz
  for (int l = 0; l < LANES; ++l) {
    for (int j = 0; j < 3; ++j) in[j][l] = m[3 * (n0 + l) + j];
    for (int j = 0; j < 4; ++j) in[3 + j][l] = q[4 * (n0 + l) + j];
    for (int j = 0; j < 3; ++j) in[7 + j][l] = sc[3 * (n0 + l) + j];
  }
  F8 v[10];
  for (int j = 0; j < 10; ++j) v[j] = F8::load(in[j]);
  auto B = [](float x) { return F8::set1(x); };
  const float* R = cam.R;
  F8 t[3];
  for (int i = 0; i < 3; ++i) t[i] = fma(B(R[3 * i]), v[0], fma(B(R[3 * i + 1]), v[1], fma(B(R[3 * i + 2]), v[2], B(cam.t[i]))));
  M8 keep = (t[2] > B(near_plane)) & (t[2] < B(far_plane));
  // rotation of the Gaussian from its normalised quaternion, then M = Rq diag(scale)
  const F8 inv = B(1.f) / max(sqrt(v[3] * v[3] + v[4] * v[4] + v[5] * v[5] + v[6] * v[6]), B(1e-12f));
  const F8 w = v[3] * inv, x = v[4] * inv, y = v[5] * inv, z = v[6] * inv, two = B(2.f), one = B(1.f);
  const F8 Rq[9] = {one - two * (y * y + z * z), two * (x * y - w * z), two * (x * z + w * y),
                    two * (x * y + w * z), one - two * (x * x + z * z), two * (y * z - w * x),
                    two * (x * z - w * y), two * (y * z + w * x), one - two * (x * x + y * y)};
  F8 M[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) M[3 * i + j] = Rq[3 * i + j] * v[7 + j];
  F8 Sig[9], RS[9], Sc[9];
  for (int i = 0; i < 3; ++i)
    for (int j = i; j < 3; ++j)
      Sig[3 * i + j] = Sig[3 * j + i] = fma(M[3 * i], M[3 * j], fma(M[3 * i + 1], M[3 * j + 1], M[3 * i + 2] * M[3 * j + 2]));
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      RS[3 * i + j] = fma(B(R[3 * i]), Sig[j], fma(B(R[3 * i + 1]), Sig[3 + j], B(R[3 * i + 2]) * Sig[6 + j]));
  for (int i = 0; i < 3; ++i)
    for (int j = i; j < 3; ++j)
      Sc[3 * i + j] = Sc[3 * j + i] = fma(RS[3 * i], B(R[3 * j]), fma(RS[3 * i + 1], B(R[3 * j + 1]), RS[3 * i + 2] * B(R[3 * j + 2])));
  // Jacobian with the clamped view direction, and the dilated 2D covariance
  const F8 iz = one / t[2], iz2 = iz * iz;
  const F8 rx = t[0] * iz, ry = t[1] * iz;
  const F8 txc = t[2] * min(max(rx, B(cam.lo_x)), B(cam.hi_x)), tyc = t[2] * min(max(ry, B(cam.lo_y)), B(cam.hi_y));
  const F8 J0 = B(cam.fx) * iz, J2 = B(-cam.fx) * txc * iz2, J4 = B(cam.fy) * iz, J5 = B(-cam.fy) * tyc * iz2;
  const F8 r0a = fma(J0, Sc[0], J2 * Sc[6]), r0b = fma(J0, Sc[1], J2 * Sc[7]), r0c = fma(J0, Sc[2], J2 * Sc[8]);
  const F8 r1b = fma(J4, Sc[4], J5 * Sc[7]), r1c = fma(J4, Sc[5], J5 * Sc[8]);
  const F8 a = fma(r0a, J0, r0c * J2) + B(eps2d), b = fma(r0b, J4, r0c * J5), c = fma(r1b, J4, r1c * J5) + B(eps2d);
  const F8 det = a * c - b * b;
  keep = keep & (det > B(0.f));
  const F8 idet = one / max(det, B(1e-10f));
  const F8 mx = fma(B(cam.fx), rx, B(cam.cx)), my = fma(B(cam.fy), ry, B(cam.cy));
  const F8 radx = ceil(B(RADIUS_SIGMAS) * sqrt(max(a, B(0.f)))), rady = ceil(B(RADIUS_SIGMAS) * sqrt(max(c, B(0.f))));
  keep = keep & (mx + radx > B(0.f)) & (mx - radx < B((float)cam.width)) & (my + rady > B(0.f)) &
         (my - rady < B((float)cam.height));
  const F8 zero = B(0.f);
  float out[8][LANES];
  const F8 res[8] = {select(keep, radx, zero), select(keep, rady, zero), select(keep, mx, zero), select(keep, my, zero),
                     select(keep, t[2], zero), select(keep, c * idet, zero), select(keep, zero - b * idet, zero),
                     select(keep, a * idet, zero)};
  for (int j = 0; j < 8; ++j) res[j].store(out[j]);
  for (int l = 0; l < LANES; ++l) {
    const int64_t i = i0 + l;
    rad[2 * i] = (int)out[0][l]; rad[2 * i + 1] = (int)out[1][l];
    m2[2 * i] = out[2][l]; m2[2 * i + 1] = out[3][l];
    dep[i] = out[4][l];
    con[3 * i] = out[5][l]; con[3 * i + 1] = out[6][l]; con[3 * i + 2] = out[7][l];
  }
}

}  // namespace

std::vector<at::Tensor> projection_fwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                       const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width,
                                       int64_t height, double eps2d, double near_plane, double far_plane) {
  const int64_t N = means.size(0), C = viewmats.size(0);
  auto f = means.options();
  at::Tensor radii = at::zeros({C, N, 2}, f.dtype(at::kInt));
  at::Tensor means2d = at::zeros({C, N, 2}, f), depths = at::zeros({C, N}, f), conics = at::zeros({C, N, 3}, f);
  const float *m = means.data_ptr<float>(), *q = quats.data_ptr<float>(), *s = scales.data_ptr<float>();
  int* rad = radii.data_ptr<int>();
  float *m2 = means2d.data_ptr<float>(), *dep = depths.data_ptr<float>(), *con = conics.data_ptr<float>();
  for (int64_t c = 0; c < C; ++c) {
    const Camera cam = make_camera(viewmats.data_ptr<float>() + 16 * c, Ks.data_ptr<float>() + 9 * c, (int)width,
                                   (int)height);
    at::parallel_for(0, N, 2048, [&](int64_t b, int64_t e) {
      ProjState st;
      int64_t n = b;
      for (; n + LANES <= e; n += LANES)
        project8(m, q, s, cam, (float)eps2d, (float)near_plane, (float)far_plane, n, c * N + n, rad, m2, dep, con);
      for (; n < e; ++n) {  // the tail, one at a time
        const int64_t i = c * N + n;
        float mean2d[2], depth, conic[3];
        int r[2];
        if (!project_forward(m + 3 * n, q + 4 * n, s + 3 * n, cam, (float)eps2d, (float)near_plane,
                             (float)far_plane, st, mean2d, &depth, conic, r))
          continue;  // culled: zeros and radius 0
        rad[2 * i] = r[0]; rad[2 * i + 1] = r[1];
        m2[2 * i] = mean2d[0]; m2[2 * i + 1] = mean2d[1];
        dep[i] = depth;
        con[3 * i] = conic[0]; con[3 * i + 1] = conic[1]; con[3 * i + 2] = conic[2];
      }
    });
  }
  return {radii, means2d, depths, conics};
}

std::vector<at::Tensor> projection_bwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                       const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width,
                                       int64_t height, double eps2d, const at::Tensor& radii,
                                       const at::Tensor& /*conics*/, const at::Tensor& v_means2d,
                                       const at::Tensor& v_depths, const at::Tensor& v_conics) {
  const int64_t N = means.size(0), C = viewmats.size(0);
  at::Tensor v_means = at::zeros_like(means), v_quats = at::zeros_like(quats), v_scales = at::zeros_like(scales);
  const float *m = means.data_ptr<float>(), *q = quats.data_ptr<float>(), *s = scales.data_ptr<float>();
  const int* rad = radii.data_ptr<int>();
  const float *vm2 = v_means2d.data_ptr<float>(), *vd = v_depths.data_ptr<float>(), *vc = v_conics.data_ptr<float>();
  float *vm = v_means.data_ptr<float>(), *vq = v_quats.data_ptr<float>(), *vs = v_scales.data_ptr<float>();
  std::vector<Camera> cams;
  for (int64_t c = 0; c < C; ++c)
    cams.push_back(make_camera(viewmats.data_ptr<float>() + 16 * c, Ks.data_ptr<float>() + 9 * c, (int)width,
                               (int)height));
  // One Gaussian per item, looping over cameras, so the accumulation needs no atomics.
  at::parallel_for(0, N, 1024, [&](int64_t b, int64_t e) {
    ProjState st;
    float mean2d[2], depth, conic[3];
    int r[2];
    for (int64_t n = b; n < e; ++n)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t i = c * N + n;
        if (rad[2 * i] == 0 && rad[2 * i + 1] == 0) continue;
        // Re-run the forward for its intermediates (cheaper than storing ~40 floats per pair).
        project_forward(m + 3 * n, q + 4 * n, s + 3 * n, cams[c], (float)eps2d, 0.f, INFINITY, st, mean2d, &depth,
                        conic, r);
        project_backward(q + 4 * n, s + 3 * n, cams[c], st, vm2 + 2 * i, vd[i], vc + 3 * i, vm + 3 * n, vq + 4 * n,
                         vs + 3 * n);
      }
  });
  return {v_means, v_quats, v_scales};
}

}  // namespace aa::cpu
