// Backward of the front-to-back compositing (rasterize_fwd.cu): one block per (camera, tile), one thread per
// pixel, walking each tile's splats back to front so that the colour behind a splat is known when it is met.
//
// For a pixel with final transmittance T_N, background bg and splats i = 0.. blended with alphas a_i and
// transmittances T_i = prod_{j<i} (1 - a_j) in front of them:
//   colour = sum_i a_i T_i c_i + T_N bg,  alpha = 1 - T_N
//   d colour / d c_i = a_i T_i
//   d colour / d a_i = T_i c_i - S_i / (1 - a_i),  S_i = sum_{k>i} a_k T_k c_k + T_N bg  (colour behind i)
//   d alpha  / d a_i = T_N / (1 - a_i)
// and a_i = opacity * exp(-power) where not clamped at ALPHA_MAX, power = 0.5 (A dx^2 + C dy^2) + B dx dy
// with conic (A, B, C) and (dx, dy) = mean - pixel centre.
#include "math.h"
#include "common.cuh"
#include "launchers.h"

namespace aa {
namespace {

// Gradients for channels [d0, d0 + CDIM) (see gpu::kChannelChunks); every gradient is linear in the
// per-channel terms, so chunks add up. The v_render_alphas term joins the chunk with d0 == 0 only.
//   grid: C * th * tw blocks; block: tile_size^2 threads rounded up to a multiple of 32;
//   dynamic shared memory: blockDim.x * gpu::kSplatSlotBytes.
//   -> (+=) v_means2d [C,N,2], v_conics [C,N,3], v_colors [C,N,D], v_opacities [C,N]
template <int CDIM>
__global__ void rasterize_bwd_kernel(const float* __restrict__ means2d, const float* __restrict__ conics,
                                     const float* __restrict__ colors, const float* __restrict__ opacities,
                                     const float* __restrict__ backgrounds, int C, int D, int d0, int width,
                                     int height, int tile_size, int tile_width, int tile_height,
                                     const int32_t* __restrict__ isect_offsets,
                                     const int32_t* __restrict__ flatten_ids, int64_t M,
                                     const float* __restrict__ final_Ts, const int32_t* __restrict__ last_ids,
                                     const float* __restrict__ v_render_colors,
                                     const float* __restrict__ v_render_alphas, float* __restrict__ v_means2d,
                                     float* __restrict__ v_conics, float* __restrict__ v_colors,
                                     float* __restrict__ v_opacities) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ int block_last;  // largest last_id of the block's pixels
  const int n_threads = blockDim.x, rank = threadIdx.x, lane = rank & 31;
  const gpu::SplatBatch batch = gpu::splat_batch(smem, n_threads);
  const gpu::TileBlock b =
      gpu::tile_block(width, height, tile_size, tile_width, tile_height, C, isect_offsets, M);
  const float px = b.x + 0.5f, py = b.y + 0.5f;

  // Per-pixel state; threads without a pixel keep neutral values and never contribute.
  const float T_final = b.inside ? final_Ts[b.pix] : 1.f;
  float T = T_final;                 // transmittance behind the current splat, then in front of it
  const int last = b.inside ? last_ids[b.pix] : b.range_start - 1;
  float v_rgb[CDIM], S[CDIM];        // d loss / d colour of the pixel, colour behind the current splat
  const float* bg = backgrounds ? backgrounds + static_cast<int64_t>(b.camera) * D + d0 : nullptr;
  for (int k = 0; k < CDIM; ++k) {
    v_rgb[k] = b.inside ? v_render_colors[b.pix * D + d0 + k] : 0.f;
    S[k] = (b.inside && bg) ? T_final * bg[k] : 0.f;
  }
  const float v_alpha_out = (b.inside && d0 == 0) ? v_render_alphas[b.pix] : 0.f;

  // Entries past every pixel's last blended splat need no visit: start from the block's largest last_id.
  if (rank == 0) block_last = b.range_start - 1;
  __syncthreads();
  const int warp_last = gpu::warp_max(last);
  if (lane == 0) atomicMax(&block_last, warp_last);
  __syncthreads();
  const int first_entry = min(block_last, b.range_end - 1);  // back-to-front walk: first_entry .. range_start

  for (int batch_end = first_entry; batch_end >= b.range_start; batch_end -= n_threads) {
    // Slot j of this batch holds entry batch_end - j, so increasing j walks back to front.
    __syncthreads();  // everyone is done with the previous batch
    const int entry = batch_end - rank;
    if (entry >= b.range_start) gpu::load_splat(batch, rank, entry, flatten_ids, means2d, conics, opacities);
    __syncthreads();

    const int batch_n = min(n_threads, batch_end - b.range_start + 1);  // same for the whole block
    for (int j = 0; j < batch_n; ++j) {
      const int i = batch_end - j;
      const float4 co = batch.conic_opacity[j];
      const float2 mean = batch.mean[j];
      const float dx = mean.x - px, dy = mean.y - py;
      const float power = gpu::splat_power(co, dx, dy);
      const float vis = expf(-power);
      const float alpha = fminf(ALPHA_MAX, co.w * vis);
      // Blended in the forward: not past this pixel's last splat, and not skipped (same tests as forward).
      const bool valid = b.inside && i <= last && power >= 0.f && alpha >= ALPHA_MIN;
      if (!__any_sync(gpu::kFullMask, valid)) continue;  // uniform per warp: no lane needs this splat

      const int32_t g = batch.id[j];
      float v_col[CDIM];
      float v_conic_x = 0.f, v_conic_y = 0.f, v_conic_z = 0.f, v_mean_x = 0.f, v_mean_y = 0.f, v_opac = 0.f;
      for (int k = 0; k < CDIM; ++k) v_col[k] = 0.f;
      if (valid) {
        const float inv_one_minus = 1.f / (1.f - alpha);
        T *= inv_one_minus;  // now T_i, the transmittance in front of this splat
        const float weight = alpha * T;
        const float* col = colors + static_cast<int64_t>(g) * D + d0;
        float v_alpha = v_alpha_out * T_final * inv_one_minus;
        for (int k = 0; k < CDIM; ++k) {
          v_col[k] = weight * v_rgb[k];
          v_alpha += v_rgb[k] * (col[k] * T - S[k] * inv_one_minus);
          S[k] += col[k] * weight;  // this splat is now behind the next one visited
        }
        if (co.w * vis <= ALPHA_MAX) {  // alpha not clamped: gradient flows to opacity and power
          const float v_power = -co.w * vis * v_alpha;
          v_opac = vis * v_alpha;
          v_conic_x = 0.5f * dx * dx * v_power;
          v_conic_y = dx * dy * v_power;
          v_conic_z = 0.5f * dy * dy * v_power;
          v_mean_x = v_power * (co.x * dx + co.y * dy);
          v_mean_y = v_power * (co.y * dx + co.z * dy);
        }
      }

      // One atomicAdd per warp and value: sum the lanes first (lanes that skip add zeros).
      for (int k = 0; k < CDIM; ++k) v_col[k] = gpu::warp_sum(v_col[k]);
      v_conic_x = gpu::warp_sum(v_conic_x);
      v_conic_y = gpu::warp_sum(v_conic_y);
      v_conic_z = gpu::warp_sum(v_conic_z);
      v_mean_x = gpu::warp_sum(v_mean_x);
      v_mean_y = gpu::warp_sum(v_mean_y);
      v_opac = gpu::warp_sum(v_opac);
      if (lane == 0) {
        const int64_t gg = g;
        float* vc = v_colors + gg * D + d0;
        for (int k = 0; k < CDIM; ++k) atomicAdd(vc + k, v_col[k]);
        atomicAdd(v_conics + 3 * gg, v_conic_x);
        atomicAdd(v_conics + 3 * gg + 1, v_conic_y);
        atomicAdd(v_conics + 3 * gg + 2, v_conic_z);
        atomicAdd(v_means2d + 2 * gg, v_mean_x);
        atomicAdd(v_means2d + 2 * gg + 1, v_mean_y);
        atomicAdd(v_opacities + gg, v_opac);
      }
    }
  }
}

template <int CDIM>
void launch_chunk(dim3 grid, int threads, size_t smem, cudaStream_t stream, const float* means2d,
                  const float* conics, const float* colors, const float* opacities, const float* backgrounds,
                  int C, int D, int d0, int width, int height, int tile_size, int tile_width, int tile_height,
                  const int32_t* isect_offsets, const int32_t* flatten_ids, int64_t M, const float* final_Ts,
                  const int32_t* last_ids, const float* v_render_colors, const float* v_render_alphas,
                  float* v_means2d, float* v_conics, float* v_colors, float* v_opacities) {
  rasterize_bwd_kernel<CDIM><<<grid, threads, smem, stream>>>(
      means2d, conics, colors, opacities, backgrounds, C, D, d0, width, height, tile_size, tile_width,
      tile_height, isect_offsets, flatten_ids, M, final_Ts, last_ids, v_render_colors, v_render_alphas,
      v_means2d, v_conics, v_colors, v_opacities);
}

}  // namespace

void launch_rasterize_bwd(const float* means2d, const float* conics, const float* colors, const float* opacities,
                          const float* backgrounds, int C, int N, int D, int width, int height, int tile_size,
                          int tile_width, int tile_height, const int32_t* isect_offsets,
                          const int32_t* flatten_ids, int64_t M, const float* final_Ts,
                          const int32_t* last_ids, const float* v_render_colors, const float* v_render_alphas,
                          float* v_means2d, float* v_conics, float* v_colors, float* v_opacities,
                          cudaStream_t stream) {
  (void)N;  // splats are addressed through flatten_ids (c * N + n)
  const int64_t n_blocks = static_cast<int64_t>(C) * tile_width * tile_height;
  if (n_blocks == 0 || width == 0 || height == 0 || D == 0 || M == 0) return;  // M == 0: all gradients zero
  const int threads = static_cast<int>(gpu::ceil_div(static_cast<int64_t>(tile_size) * tile_size, 32) * 32);
  const size_t smem = static_cast<size_t>(threads) * gpu::kSplatSlotBytes;
  const dim3 grid(static_cast<unsigned>(n_blocks));

  for (int d0 = 0; d0 < D;) {
    const int chunk = gpu::channel_chunk(D - d0);
#define AA_BWD_CHUNK(N_)                                                                                     \
  case N_:                                                                                                   \
    launch_chunk<N_>(grid, threads, smem, stream, means2d, conics, colors, opacities, backgrounds, C, D, d0,   \
                     width, height, tile_size, tile_width, tile_height, isect_offsets, flatten_ids, M,        \
                     final_Ts, last_ids, v_render_colors, v_render_alphas, v_means2d, v_conics, v_colors, \
                     v_opacities);                                                                           \
    break;
    switch (chunk) {
      AA_BWD_CHUNK(16) AA_BWD_CHUNK(8) AA_BWD_CHUNK(4) AA_BWD_CHUNK(3) AA_BWD_CHUNK(2) AA_BWD_CHUNK(1)
    }
#undef AA_BWD_CHUNK
    d0 += chunk;
  }
}

}  // namespace aa
