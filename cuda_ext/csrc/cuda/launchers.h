// Raw-pointer launchers of the CUDA splatting kernels (cuda/*.cu). Plain C++: no torch here, so the .cu files
// build standalone with nvcc; cuda_ops.cpp allocates the tensors and calls these on torch's current stream.
//
// Conventions: every pointer is to contiguous device memory (float32 unless typed otherwise), shapes are
// given in the comments (C cameras, N Gaussians, P points, K SH coefficients, D channels, M tile
// intersections, th x tw tiles per camera). Launchers with nothing to do (a zero size) launch nothing.
// Outputs documented as "zero-initialised" are accumulated into with atomicAdd: the caller zeroes them.
// Errors are not checked here: the caller checks cudaGetLastError (C10_CUDA_KERNEL_LAUNCH_CHECK) after each.
#pragma once
#include <cuda_runtime_api.h>
#include <cstdint>

#include "value_rules.h"

namespace aa {

// Number of bits that represent n (Python's int.bit_length): the width of the tile field in an isect_id.
inline int bit_length(int64_t n) {
  int bits = 0;
  while (n > 0) { ++bits; n >>= 1; }
  return bits;
}

// ------------------------------------------------------------------------------------------ projection
// One thread per (camera, Gaussian). Culled Gaussians get radii (0, 0) and zeros in every other output.
void launch_projection_fwd(const float* means /*[N,3]*/, const float* quats /*[N,4]*/,
                           const float* scales /*[N,3]*/, const float* viewmats /*[C,4,4]*/,
                           const float* Ks /*[C,3,3]*/, int C, int N, int width, int height, float eps2d,
                           float near_plane, float far_plane, int32_t* radii /*[C,N,2]*/,
                           float* means2d /*[C,N,2]*/, float* depths /*[C,N]*/, float* conics /*[C,N,3]*/,
                           cudaStream_t stream);

// Gradients of the kept (radii != 0) projections, summed over cameras into v_means [N,3], v_quats [N,4],
// v_scales [N,3] (zero-initialised).
void launch_projection_bwd(const float* means /*[N,3]*/, const float* quats /*[N,4]*/,
                           const float* scales /*[N,3]*/, const float* viewmats /*[C,4,4]*/,
                           const float* Ks /*[C,3,3]*/, int C, int N, int width, int height, float eps2d,
                           const int32_t* radii /*[C,N,2]*/, const float* v_means2d /*[C,N,2]*/,
                           const float* v_depths /*[C,N]*/, const float* v_conics /*[C,N,3]*/,
                           float* v_means /*[N,3]*/, float* v_quats /*[N,4]*/, float* v_scales /*[N,3]*/,
                           cudaStream_t stream);

// --------------------------------------------------------------------------------- spherical harmonics
// One thread per point: colors [P,3] from dirs [P,3] and coeffs [P,K,3], K >= (degree+1)^2.
void launch_sh_fwd(int degree, int64_t P, int K, const float* dirs /*[P,3]*/, const float* coeffs /*[P,K,3]*/,
                   float* colors /*[P,3]*/, cudaStream_t stream);

// Writes (not accumulates) v_dirs [P,3] and v_coeffs [P,K,3] (zeros past the used bands).
void launch_sh_bwd(int degree, int64_t P, int K, const float* dirs /*[P,3]*/, const float* coeffs /*[P,K,3]*/,
                   const float* v_colors /*[P,3]*/, float* v_dirs /*[P,3]*/, float* v_coeffs /*[P,K,3]*/,
                   cudaStream_t stream);

// ------------------------------------------------------------------------------------------- binning
// Pass 1 of isect_tiles: tiles_per_gauss [C*N] = number of tiles each splat's box touches (0 when culled).
void launch_isect_count(const float* means2d /*[C,N,2]*/, const int32_t* radii /*[C,N,2]*/, int64_t CN,
                        int tile_size, int tile_width, int tile_height, int32_t* tiles_per_gauss /*[C,N]*/,
                        cudaStream_t stream);

// Pass 2 of isect_tiles: writes each splat's entries, row-major over its tile box, from position
// cum_counts[i] - tiles_per_gauss[i] (cum_counts = inclusive prefix sum of tiles_per_gauss):
// isect_ids [M] = camera << (tile_bits + 32) | tile << 32 | depth bits, flatten_ids [M] = c * N + n.
// The caller then stable-sorts by isect_id.
void launch_isect_write(const float* means2d /*[C,N,2]*/, const int32_t* radii /*[C,N,2]*/,
                        const float* depths /*[C,N]*/, const int32_t* tiles_per_gauss /*[C,N]*/,
                        const int64_t* cum_counts /*[C*N]*/, int C, int N, int tile_size, int tile_width,
                        int tile_height, int64_t* isect_ids /*[M]*/, int32_t* flatten_ids /*[M]*/,
                        cudaStream_t stream);

// offsets [C*th*tw]: index of the first entry of each (camera, tile) in the sorted isect_ids [M] (M for
// empty trailing tiles), i.e. the exclusive prefix sum of the per-tile counts. One thread per tile.
void launch_isect_offset_encode(const int64_t* isect_ids /*[M]*/, int64_t M, int C, int tile_width,
                                int tile_height, int32_t* offsets /*[C,th,tw]*/, cudaStream_t stream);

// ---------------------------------------------------------------------------------------- compositing
// One block per (camera, tile), one thread per pixel, front to back. backgrounds may be nullptr.
// Needs tile_size * tile_size <= 1024 and tile_width * tile_size >= width (same for heights).
void launch_rasterize_fwd(const float* means2d /*[C,N,2]*/, const float* conics /*[C,N,3]*/,
                          const float* colors /*[C,N,D]*/, const float* opacities /*[C,N]*/,
                          const float* backgrounds /*[C,D] or nullptr*/, int C, int N, int D, int width,
                          int height, int tile_size, int tile_width, int tile_height,
                          const int32_t* isect_offsets /*[C,th,tw]*/, const int32_t* flatten_ids /*[M]*/,
                          int64_t M, float* render_colors /*[C,H,W,D]*/, float* render_alphas /*[C,H,W,1]*/,
                          int32_t* last_ids /*[C,H,W]*/, float* final_Ts /*[C,H,W,1]*/, cudaStream_t stream);

// Back to front over each tile: gradients into v_means2d [C,N,2], v_conics [C,N,3], v_colors [C,N,D],
// v_opacities [C,N] (all zero-initialised).
void launch_rasterize_bwd(const float* means2d /*[C,N,2]*/, const float* conics /*[C,N,3]*/,
                          const float* colors /*[C,N,D]*/, const float* opacities /*[C,N]*/,
                          const float* backgrounds /*[C,D] or nullptr*/, int C, int N, int D, int width,
                          int height, int tile_size, int tile_width, int tile_height,
                          const int32_t* isect_offsets /*[C,th,tw]*/, const int32_t* flatten_ids /*[M]*/,
                          int64_t M, const float* final_Ts /*[C,H,W,1]*/, const int32_t* last_ids /*[C,H,W]*/,
                          const float* v_render_colors /*[C,H,W,D]*/, const float* v_render_alphas /*[C,H,W,1]*/,
                          float* v_means2d /*[C,N,2]*/, float* v_conics /*[C,N,3]*/, float* v_colors /*[C,N,D]*/,
                          float* v_opacities /*[C,N]*/, cudaStream_t stream);

// ------------------------------------------------------------------------------------------ input checks
// The tensors rasterization() checks, in ValueSegment order (value_rules.h); a segment may be empty.
struct ValueSegments {
  const float* data[kNumSegments];
  int64_t numel[kNumSegments];
};

// ORs the failed-rule bits of every row into mask [1] (zero-initialised). One launch for all segments.
void launch_value_flags(const ValueSegments& segs, int32_t* mask, cudaStream_t stream);

}  // namespace aa
