// Spherical-harmonics colour on the CPU, one point per item, math from ../math.h.
#include "../math.h"
#include "../ops.h"
#include "common.h"

namespace aa::cpu {

at::Tensor sh_fwd(int64_t degree, const at::Tensor& dirs, const at::Tensor& coeffs) {
  const int64_t P = dirs.size(0), K = coeffs.size(1);
  at::Tensor colors = at::empty({P, 3}, dirs.options());
  const float *d = dirs.data_ptr<float>(), *co = coeffs.data_ptr<float>();
  float* out = colors.data_ptr<float>();
  at::parallel_for(0, P, 4096, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) sh_forward((int)degree, d + 3 * p, co + 3 * K * p, out + 3 * p);
  });
  return colors;
}

std::vector<at::Tensor> sh_bwd(int64_t degree, const at::Tensor& dirs, const at::Tensor& coeffs,
                               const at::Tensor& v_colors) {
  const int64_t P = dirs.size(0), K = coeffs.size(1);
  at::Tensor v_dirs = at::empty_like(dirs), v_coeffs = at::empty_like(coeffs);
  const float *d = dirs.data_ptr<float>(), *co = coeffs.data_ptr<float>(), *vc = v_colors.data_ptr<float>();
  float *vd = v_dirs.data_ptr<float>(), *vco = v_coeffs.data_ptr<float>();
  at::parallel_for(0, P, 4096, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p)
      sh_backward((int)degree, (int)K, d + 3 * p, co + 3 * K * p, vc + 3 * p, vd + 3 * p, vco + 3 * K * p);
  });
  return {v_dirs, v_coeffs};
}

}  // namespace aa::cpu
