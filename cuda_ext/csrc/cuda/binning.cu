// Tile binning: which tiles each projected splat touches (isect_tiles, two passes around a prefix sum and a
// stable sort done with torch in cuda_ops.cpp), and where each tile's list starts (isect_offset_encode).
#include "common.cuh"
#include "launchers.h"

namespace aa {
namespace {

// Tile box [x0, x1) x [y0, y1) of splat i, or false when it is culled (a radius <= 0). Mirrors
// reference.isect_tiles bit for bit: floor(mean / ts - radius / ts) and ceil(mean / ts + radius / ts) in
// float32, clamped to [0, tile_width] / [0, tile_height]. The _rn intrinsics keep IEEE rounding under
// --use_fast_math, so the box matches the reference even when the division is not exact.
__device__ __forceinline__ bool tile_box(const float* __restrict__ means2d, const int32_t* __restrict__ radii,
                                         int64_t i, int tile_size, int tile_width, int tile_height, int& x0,
                                         int& y0, int& x1, int& y1) {
  const int rx = radii[2 * i], ry = radii[2 * i + 1];
  if (rx <= 0 || ry <= 0) return false;
  const float ts = static_cast<float>(tile_size);
  const float mx = __fdiv_rn(means2d[2 * i], ts), my = __fdiv_rn(means2d[2 * i + 1], ts);
  const float sx = __fdiv_rn(static_cast<float>(rx), ts), sy = __fdiv_rn(static_cast<float>(ry), ts);
  // Clamping in float first keeps far-off-screen values from overflowing the int conversion (the bounds are
  // integers, so clamping before or after floor/ceil gives the same result; NaN clamps to 0).
  const float tw = static_cast<float>(tile_width), th = static_cast<float>(tile_height);
  x0 = static_cast<int>(fminf(fmaxf(floorf(__fsub_rn(mx, sx)), 0.f), tw));
  y0 = static_cast<int>(fminf(fmaxf(floorf(__fsub_rn(my, sy)), 0.f), th));
  x1 = static_cast<int>(fminf(fmaxf(ceilf(__fadd_rn(mx, sx)), 0.f), tw));
  y1 = static_cast<int>(fminf(fmaxf(ceilf(__fadd_rn(my, sy)), 0.f), th));
  return true;
}

// Pass 1: tiles_per_gauss [C*N] = (x1 - x0) * (y1 - y0), or 0 for a culled splat.
__global__ void isect_count_kernel(const float* __restrict__ means2d, const int32_t* __restrict__ radii,
                                   int64_t CN, int tile_size, int tile_width, int tile_height,
                                   int32_t* __restrict__ tiles_per_gauss) {
  const int64_t i = gpu::global_index();
  if (i >= CN) return;
  int x0, y0, x1, y1;
  tiles_per_gauss[i] =
      tile_box(means2d, radii, i, tile_size, tile_width, tile_height, x0, y0, x1, y1) ? (x1 - x0) * (y1 - y0) : 0;
}

// Pass 2: splat i = c * N + n writes its count entries from cum_counts[i] - count on, rows of tiles (y outer,
// x inner): isect_ids = c << (32 + tile_bits) | (ty * tile_width + tx) << 32 | float bits of depth.
__global__ void isect_write_kernel(const float* __restrict__ means2d, const int32_t* __restrict__ radii,
                                   const float* __restrict__ depths, const int32_t* __restrict__ tiles_per_gauss,
                                   const int64_t* __restrict__ cum_counts, int C, int N, int tile_size,
                                   int tile_width, int tile_height, int tile_bits, int64_t* __restrict__ isect_ids,
                                   int32_t* __restrict__ flatten_ids) {
  const int64_t i = gpu::global_index();
  if (i >= static_cast<int64_t>(C) * N) return;
  const int32_t count = tiles_per_gauss[i];
  if (count == 0) return;
  int x0, y0, x1, y1;
  tile_box(means2d, radii, i, tile_size, tile_width, tile_height, x0, y0, x1, y1);  // same box as pass 1

  const uint64_t camera = static_cast<uint64_t>(i / N);
  const uint64_t camera_key = camera << (32 + tile_bits);
  const uint64_t depth_key = static_cast<uint64_t>(__float_as_uint(depths[i]));  // zero-extended bits
  int64_t out = cum_counts[i] - count;  // exclusive prefix sum: this splat's first slot
  for (int ty = y0; ty < y1; ++ty) {
    for (int tx = x0; tx < x1; ++tx, ++out) {
      const uint64_t tile = static_cast<uint64_t>(ty) * tile_width + tx;
      isect_ids[out] = static_cast<int64_t>(camera_key | (tile << 32) | depth_key);
      flatten_ids[out] = static_cast<int32_t>(i);
    }
  }
}

// One thread per (camera, tile) t: offsets[t] = number of sorted isect_ids whose (camera, tile) comes before
// t = lower bound of the key (camera, tile, depth bits 0). Equal to the exclusive cumsum of per-tile counts.
__global__ void isect_offset_encode_kernel(const int64_t* __restrict__ isect_ids, int64_t M, int C,
                                           int tile_width, int tile_height, int tile_bits,
                                           int32_t* __restrict__ offsets) {
  const int64_t t = gpu::global_index();
  const int64_t tiles_per_camera = static_cast<int64_t>(tile_width) * tile_height;
  if (t >= C * tiles_per_camera) return;
  const uint64_t camera = static_cast<uint64_t>(t / tiles_per_camera);
  const uint64_t tile = static_cast<uint64_t>(t % tiles_per_camera);
  const int64_t key = static_cast<int64_t>((camera << (32 + tile_bits)) | (tile << 32));
  int64_t lo = 0, hi = M;  // first index with isect_ids[index] >= key
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (isect_ids[mid] < key) lo = mid + 1;
    else hi = mid;
  }
  offsets[t] = static_cast<int32_t>(lo);
}

}  // namespace

void launch_isect_count(const float* means2d, const int32_t* radii, int64_t CN, int tile_size, int tile_width,
                        int tile_height, int32_t* tiles_per_gauss, cudaStream_t stream) {
  if (CN == 0) return;
  isect_count_kernel<<<gpu::ceil_div(CN, gpu::kThreads), gpu::kThreads, 0, stream>>>(
      means2d, radii, CN, tile_size, tile_width, tile_height, tiles_per_gauss);
}

void launch_isect_write(const float* means2d, const int32_t* radii, const float* depths,
                        const int32_t* tiles_per_gauss, const int64_t* cum_counts, int C, int N, int tile_size,
                        int tile_width, int tile_height, int64_t* isect_ids, int32_t* flatten_ids,
                        cudaStream_t stream) {
  const int64_t CN = static_cast<int64_t>(C) * N;
  if (CN == 0) return;
  const int tile_bits = bit_length(static_cast<int64_t>(tile_width) * tile_height);
  isect_write_kernel<<<gpu::ceil_div(CN, gpu::kThreads), gpu::kThreads, 0, stream>>>(
      means2d, radii, depths, tiles_per_gauss, cum_counts, C, N, tile_size, tile_width, tile_height, tile_bits,
      isect_ids, flatten_ids);
}

void launch_isect_offset_encode(const int64_t* isect_ids, int64_t M, int C, int tile_width, int tile_height,
                                int32_t* offsets, cudaStream_t stream) {
  const int64_t n_tiles = static_cast<int64_t>(C) * tile_width * tile_height;
  if (n_tiles == 0) return;
  const int tile_bits = bit_length(static_cast<int64_t>(tile_width) * tile_height);
  isect_offset_encode_kernel<<<gpu::ceil_div(n_tiles, gpu::kThreads), gpu::kThreads, 0, stream>>>(
      isect_ids, M, C, tile_width, tile_height, tile_bits, offsets);
}

}  // namespace aa
