// Small device helpers shared by the CUDA kernels in this folder (not compiled on its own).
#pragma once
#include <cuda_runtime.h>
#include <cstdint>

namespace aa {
namespace gpu {

constexpr int kThreads = 256;       // block size of the element-wise kernels (projection, SH, binning)
constexpr unsigned kFullMask = 0xffffffffu;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Global index of this thread in a 1D launch (64-bit, so C * N may pass 2^31).
__device__ __forceinline__ int64_t global_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// Sum over the 32 lanes of a full warp; the total lands in lane 0 (other lanes hold partial sums).
__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(kFullMask, v, offset);
  return v;
}

// Maximum over the 32 lanes of a full warp, returned to every lane.
__device__ __forceinline__ int warp_max(int v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = max(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Where one rasterisation block sits: block f = blockIdx.x covers tile (tile_x, tile_y) of camera `camera`;
// thread `rank` is pixel (x, y). Blocks are rounded up to whole warps, so threads with rank >= tile_size^2
// ("phantom" pixels) and pixels past the image edge take part in loads and warp collectives but own no pixel.
struct TileBlock {
  int camera, tile_x, tile_y;
  int x, y;
  bool inside;         // this thread owns a pixel of the image
  int64_t pix;         // camera * H * W + y * W + x (valid when inside)
  int range_start;     // this tile's entries in flatten_ids: [range_start, range_end)
  int range_end;
};

__device__ __forceinline__ TileBlock tile_block(int width, int height, int tile_size, int tile_width,
                                                int tile_height, int n_cameras, const int32_t* isect_offsets,
                                                int64_t M) {
  TileBlock b;
  const int tiles_per_camera = tile_width * tile_height;
  const int f = blockIdx.x;  // flat (camera, tile) index, same order as isect_offsets [C, th, tw]
  b.camera = f / tiles_per_camera;
  const int tile = f - b.camera * tiles_per_camera;
  b.tile_y = tile / tile_width;
  b.tile_x = tile - b.tile_y * tile_width;
  const int rank = threadIdx.x;
  const int ly = rank / tile_size, lx = rank - ly * tile_size;
  b.x = b.tile_x * tile_size + lx;
  b.y = b.tile_y * tile_size + ly;
  b.inside = rank < tile_size * tile_size && b.x < width && b.y < height;
  b.pix = (static_cast<int64_t>(b.camera) * height + b.y) * width + b.x;
  b.range_start = isect_offsets[f];
  b.range_end = (f + 1 < n_cameras * tiles_per_camera) ? isect_offsets[f + 1] : static_cast<int>(M);
  return b;
}

// Per-entry data of one batch of splats staged in shared memory by the rasterisers. Layout of the dynamic
// shared buffer for n slots: float4 conic_opacity[n] | float2 mean[n] | int32 id[n]  (28 bytes a slot).
struct SplatBatch {
  float4* conic_opacity;  // (conic.x, conic.y, conic.z, opacity)
  float2* mean;           // 2D mean in pixels
  int32_t* id;            // flat Gaussian index c * N + n
};

constexpr int kSplatSlotBytes = sizeof(float4) + sizeof(float2) + sizeof(int32_t);

__device__ __forceinline__ SplatBatch splat_batch(void* smem, int n_slots) {
  SplatBatch s;
  s.conic_opacity = reinterpret_cast<float4*>(smem);
  s.mean = reinterpret_cast<float2*>(s.conic_opacity + n_slots);
  s.id = reinterpret_cast<int32_t*>(s.mean + n_slots);
  return s;
}

// Stage entry `entry` of flatten_ids into slot `slot`.
__device__ __forceinline__ void load_splat(const SplatBatch& s, int slot, int entry, const int32_t* flatten_ids,
                                           const float* means2d, const float* conics, const float* opacities) {
  const int32_t g = flatten_ids[entry];
  s.id[slot] = g;
  s.mean[slot] = make_float2(means2d[2 * static_cast<int64_t>(g)], means2d[2 * static_cast<int64_t>(g) + 1]);
  const float* cn = conics + 3 * static_cast<int64_t>(g);
  s.conic_opacity[slot] = make_float4(cn[0], cn[1], cn[2], opacities[g]);
}

// Gaussian falloff exponent of a splat at offset (dx, dy) = mean - pixel centre.
__device__ __forceinline__ float splat_power(float4 co, float dx, float dy) {
  return 0.5f * (co.x * dx * dx + co.z * dy * dy) + co.y * dx * dy;
}

// The channel counts the rasterisers are compiled for. A colour of D channels is split into chunks of these
// sizes (largest first) with one launch each: compositing is independent per channel given the alphas, and
// every gradient is linear in the per-channel terms, so chunks add up to the full result.
constexpr int kChannelChunks[] = {16, 8, 4, 3, 2, 1};

inline int channel_chunk(int remaining) {
  for (int c : kChannelChunks)
    if (c <= remaining) return c;
  return 1;
}

}  // namespace gpu
}  // namespace aa
