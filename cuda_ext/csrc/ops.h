// Tensor-level splatting ops. Each has a CPU implementation (cpu/*.cpp) and, when built WITH_CUDA, a CUDA one
// (cuda_ops.cpp -> cuda/*.cu). bindings.cpp checks arguments and dispatches on the device.
// Shapes: C cameras, N Gaussians, D channels, K SH coefficients, M tile intersections, th x tw tiles.
#pragma once
#include <torch/extension.h>
#include <optional>
#include <vector>

namespace aa {

#define AA_DECLARE_OPS(NS)                                                                                   \
  namespace NS {                                                                                             \
  /* means [N,3] quats [N,4] scales [N,3] viewmats [C,4,4] Ks [C,3,3] -> radii [C,N,2] i32, means2d [C,N,2], \
     depths [C,N], conics [C,N,3] */                                                                          \
  std::vector<at::Tensor> projection_fwd(const at::Tensor& means, const at::Tensor& quats,                  \
                                         const at::Tensor& scales, const at::Tensor& viewmats,              \
                                         const at::Tensor& Ks, int64_t width, int64_t height, double eps2d, \
                                         double near_plane, double far_plane);                               \
  /* -> v_means [N,3], v_quats [N,4], v_scales [N,3] */                                                      \
  std::vector<at::Tensor> projection_bwd(const at::Tensor& means, const at::Tensor& quats,                  \
                                         const at::Tensor& scales, const at::Tensor& viewmats,              \
                                         const at::Tensor& Ks, int64_t width, int64_t height, double eps2d, \
                                         const at::Tensor& radii, const at::Tensor& conics,                 \
                                         const at::Tensor& v_means2d, const at::Tensor& v_depths,           \
                                         const at::Tensor& v_conics);                                       \
  /* dirs [P,3] coeffs [P,K,3] -> colors [P,3] */                                                            \
  at::Tensor sh_fwd(int64_t degree, const at::Tensor& dirs, const at::Tensor& coeffs);                      \
  /* -> v_dirs [P,3], v_coeffs [P,K,3] */                                                                     \
  std::vector<at::Tensor> sh_bwd(int64_t degree, const at::Tensor& dirs, const at::Tensor& coeffs,          \
                                 const at::Tensor& v_colors);                                               \
  /* means2d [C,N,2] radii [C,N,2] depths [C,N] -> tiles_per_gauss [C,N] i32, isect_ids [M] i64 sorted,      \
     flatten_ids [M] i32 */                                                                                   \
  std::vector<at::Tensor> isect_tiles(const at::Tensor& means2d, const at::Tensor& radii,                   \
                                      const at::Tensor& depths, int64_t tile_size, int64_t tile_width,     \
                                      int64_t tile_height);                                                 \
  /* isect_ids [M] sorted -> offsets [C,th,tw] i32 */                                                        \
  at::Tensor isect_offset_encode(const at::Tensor& isect_ids, int64_t n_cameras, int64_t tile_width,        \
                                 int64_t tile_height);                                                      \
  /* means2d [C,N,2] conics [C,N,3] colors [C,N,D] opacities [C,N] backgrounds [C,D]? ->                     \
     render_colors [C,H,W,D], render_alphas [C,H,W,1], last_ids [C,H,W] i32 (index into flatten_ids of the \
     last blended splat, or the tile's start - 1 when none), final_Ts [C,H,W,1] (kept exactly: 1 - alpha  \
     loses digits when T is small) */                                             \
  std::vector<at::Tensor> rasterize_fwd(const at::Tensor& means2d, const at::Tensor& conics,                \
                                        const at::Tensor& colors, const at::Tensor& opacities,              \
                                        const std::optional<at::Tensor>& backgrounds, int64_t width,        \
                                        int64_t height, int64_t tile_size, const at::Tensor& isect_offsets, \
                                        const at::Tensor& flatten_ids);                                     \
  /* -> v_means2d [C,N,2], v_conics [C,N,3], v_colors [C,N,D], v_opacities [C,N] */                          \
  std::vector<at::Tensor> rasterize_bwd(const at::Tensor& means2d, const at::Tensor& conics,                \
                                        const at::Tensor& colors, const at::Tensor& opacities,              \
                                        const std::optional<at::Tensor>& backgrounds, int64_t width,        \
                                        int64_t height, int64_t tile_size, const at::Tensor& isect_offsets, \
                                        const at::Tensor& flatten_ids, const at::Tensor& final_Ts,          \
                                        const at::Tensor& last_ids, const at::Tensor& v_render_colors,      \
                                        const at::Tensor& v_render_alphas);                                 \
  /* 7 float tensors in ValueSegment order (value_rules.h) -> mask [1] i32 of the value rules that fail */   \
  at::Tensor value_flags(const std::vector<at::Tensor>& segments);                                          \
  }

AA_DECLARE_OPS(cpu)
#ifdef WITH_CUDA
AA_DECLARE_OPS(cuda)
#endif
#undef AA_DECLARE_OPS

}  // namespace aa
