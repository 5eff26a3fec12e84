// EWA projection on the CPU: one (camera, Gaussian) pair per item, math from ../math.h.
#include "../math.h"
#include "../ops.h"
#include "common.h"

namespace aa::cpu {

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
      for (int64_t n = b; n < e; ++n) {
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
