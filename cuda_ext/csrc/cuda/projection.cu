// EWA projection of 3D Gaussians, forward and backward: one thread per (camera, Gaussian). The per-Gaussian
// math is project_forward / project_backward from csrc/math.h, shared with the CPU kernels.
#include <cfloat>

#include "math.h"
#include "common.cuh"
#include "launchers.h"

namespace aa {
namespace {

// Thread i = c * N + n projects Gaussian n through camera c.
//   means [N,3], quats [N,4], scales [N,3], viewmats [C,4,4], Ks [C,3,3]
//   -> radii [C,N,2] i32, means2d [C,N,2], depths [C,N], conics [C,N,3] (zeros / radius 0 when culled)
__global__ void projection_fwd_kernel(const float* __restrict__ means, const float* __restrict__ quats,
                                      const float* __restrict__ scales, const float* __restrict__ viewmats,
                                      const float* __restrict__ Ks, int C, int N, int width, int height,
                                      float eps2d, float near_plane, float far_plane, int32_t* __restrict__ radii,
                                      float* __restrict__ means2d, float* __restrict__ depths,
                                      float* __restrict__ conics) {
  const int64_t i = gpu::global_index();
  if (i >= static_cast<int64_t>(C) * N) return;
  const int c = static_cast<int>(i / N), n = static_cast<int>(i - static_cast<int64_t>(c) * N);

  const Camera cam = make_camera(viewmats + 16 * c, Ks + 9 * c, width, height);
  ProjState s;
  float m2d[2], depth, conic[3];
  int radius[2];
  // project_forward may fill some outputs before it culls, so it writes to locals and we copy out below.
  const bool kept = project_forward(means + 3 * static_cast<int64_t>(n), quats + 4 * static_cast<int64_t>(n),
                                    scales + 3 * static_cast<int64_t>(n), cam, eps2d, near_plane, far_plane, s,
                                    m2d, &depth, conic, radius);
  if (kept) {
    radii[2 * i] = radius[0]; radii[2 * i + 1] = radius[1];
    means2d[2 * i] = m2d[0]; means2d[2 * i + 1] = m2d[1];
    depths[i] = depth;
    conics[3 * i] = conic[0]; conics[3 * i + 1] = conic[1]; conics[3 * i + 2] = conic[2];
  } else {
    radii[2 * i] = 0; radii[2 * i + 1] = 0;
    means2d[2 * i] = 0.f; means2d[2 * i + 1] = 0.f;
    depths[i] = 0.f;
    conics[3 * i] = 0.f; conics[3 * i + 1] = 0.f; conics[3 * i + 2] = 0.f;
  }
}

// Thread i = c * N + n: backward of the projection of Gaussian n through camera c, for kept ones only.
//   v_means2d [C,N,2], v_depths [C,N], v_conics [C,N,3] -> (+=) v_means [N,3], v_quats [N,4], v_scales [N,3]
__global__ void projection_bwd_kernel(const float* __restrict__ means, const float* __restrict__ quats,
                                      const float* __restrict__ scales, const float* __restrict__ viewmats,
                                      const float* __restrict__ Ks, int C, int N, int width, int height,
                                      float eps2d, const int32_t* __restrict__ radii,
                                      const float* __restrict__ v_means2d, const float* __restrict__ v_depths,
                                      const float* __restrict__ v_conics, float* __restrict__ v_means,
                                      float* __restrict__ v_quats, float* __restrict__ v_scales) {
  const int64_t i = gpu::global_index();
  if (i >= static_cast<int64_t>(C) * N) return;
  if (radii[2 * i] == 0 && radii[2 * i + 1] == 0) return;  // culled in the forward: no gradient
  const int c = static_cast<int>(i / N);
  const int64_t n = i - static_cast<int64_t>(c) * N;
  const float* mean = means + 3 * n;
  const float* quat = quats + 4 * n;
  const float* scale = scales + 3 * n;

  // Recompute the forward intermediates. The forward already decided this Gaussian is kept (radii), so the
  // near/far test is opened up (this op is not given the planes) and the return value is not trusted: only
  // a state that is complete (det > 0, so s.det was set) is used, which guards against a rounding
  // difference flipping the recomputed cull.
  const Camera cam = make_camera(viewmats + 16 * c, Ks + 9 * c, width, height);
  ProjState s{};
  float m2d[2], depth, conic[3];
  int radius[2];
  project_forward(mean, quat, scale, cam, eps2d, -FLT_MAX, FLT_MAX, s, m2d, &depth, conic, radius);
  if (!(s.det > 0.f)) return;

  float v_mean[3] = {0.f, 0.f, 0.f}, v_quat[4] = {0.f, 0.f, 0.f, 0.f}, v_scale[3] = {0.f, 0.f, 0.f};
  project_backward(quat, scale, cam, s, v_means2d + 2 * i, v_depths[i], v_conics + 3 * i, v_mean, v_quat,
                   v_scale);
  // Several cameras see the same Gaussian: sum their contributions.
  for (int k = 0; k < 3; ++k) atomicAdd(v_means + 3 * n + k, v_mean[k]);
  for (int k = 0; k < 4; ++k) atomicAdd(v_quats + 4 * n + k, v_quat[k]);
  for (int k = 0; k < 3; ++k) atomicAdd(v_scales + 3 * n + k, v_scale[k]);
}

}  // namespace

void launch_projection_fwd(const float* means, const float* quats, const float* scales, const float* viewmats,
                           const float* Ks, int C, int N, int width, int height, float eps2d, float near_plane,
                           float far_plane, int32_t* radii, float* means2d, float* depths, float* conics,
                           cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(C) * N;
  if (total == 0) return;
  projection_fwd_kernel<<<gpu::ceil_div(total, gpu::kThreads), gpu::kThreads, 0, stream>>>(
      means, quats, scales, viewmats, Ks, C, N, width, height, eps2d, near_plane, far_plane, radii, means2d,
      depths, conics);
}

void launch_projection_bwd(const float* means, const float* quats, const float* scales, const float* viewmats,
                           const float* Ks, int C, int N, int width, int height, float eps2d,
                           const int32_t* radii, const float* v_means2d, const float* v_depths,
                           const float* v_conics, float* v_means, float* v_quats, float* v_scales,
                           cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(C) * N;
  if (total == 0) return;
  projection_bwd_kernel<<<gpu::ceil_div(total, gpu::kThreads), gpu::kThreads, 0, stream>>>(
      means, quats, scales, viewmats, Ks, C, N, width, height, eps2d, radii, v_means2d, v_depths, v_conics,
      v_means, v_quats, v_scales);
}

}  // namespace aa
