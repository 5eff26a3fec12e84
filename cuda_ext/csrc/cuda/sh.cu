// Spherical-harmonics colour, forward and backward: one thread per point, using sh_forward / sh_backward
// from csrc/math.h (shared with the CPU kernels).
#include "math.h"
#include "common.cuh"
#include "launchers.h"

namespace aa {
namespace {

// dirs [P,3], coeffs [P,K,3] -> colors [P,3]
__global__ void sh_fwd_kernel(int degree, int64_t P, int K, const float* __restrict__ dirs,
                              const float* __restrict__ coeffs, float* __restrict__ colors) {
  const int64_t p = gpu::global_index();
  if (p >= P) return;
  sh_forward(degree, dirs + 3 * p, coeffs + 3 * K * p, colors + 3 * p);
}

// v_colors [P,3] -> v_dirs [P,3], v_coeffs [P,K,3] (each point writes only its own rows: no atomics)
__global__ void sh_bwd_kernel(int degree, int64_t P, int K, const float* __restrict__ dirs,
                              const float* __restrict__ coeffs, const float* __restrict__ v_colors,
                              float* __restrict__ v_dirs, float* __restrict__ v_coeffs) {
  const int64_t p = gpu::global_index();
  if (p >= P) return;
  sh_backward(degree, K, dirs + 3 * p, coeffs + 3 * K * p, v_colors + 3 * p, v_dirs + 3 * p,
              v_coeffs + 3 * K * p);
}

}  // namespace

void launch_sh_fwd(int degree, int64_t P, int K, const float* dirs, const float* coeffs, float* colors,
                   cudaStream_t stream) {
  if (P == 0) return;
  sh_fwd_kernel<<<gpu::ceil_div(P, gpu::kThreads), gpu::kThreads, 0, stream>>>(degree, P, K, dirs, coeffs,
                                                                                colors);
}

void launch_sh_bwd(int degree, int64_t P, int K, const float* dirs, const float* coeffs, const float* v_colors,
                   float* v_dirs, float* v_coeffs, cudaStream_t stream) {
  if (P == 0) return;
  sh_bwd_kernel<<<gpu::ceil_div(P, gpu::kThreads), gpu::kThreads, 0, stream>>>(degree, P, K, dirs, coeffs,
                                                                                v_colors, v_dirs, v_coeffs);
}

}  // namespace aa
