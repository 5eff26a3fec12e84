// Tile binning on the CPU without a comparison sort. All visible (camera, splat) pairs are radix-sorted by depth
// (stable, so ties keep the Gaussian order), then a parallel counting sort deals them into tiles. Within a tile
// the list comes out in depth order, ties by Gaussian index: the same order as the reference's stable sort on
// (camera, tile, depth bits). Every pass reads its input sequentially; only the final 4-byte ids are scattered.
#include "../ops.h"
#include "common.h"

#include <algorithm>
#include <vector>

namespace aa::cpu {
namespace {

int bit_length(int64_t x) { int b = 0; while (x > 0) { ++b; x >>= 1; } return b; }

uint32_t float_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

// Stable LSD radix sort of (key << 32 | payload) values by key: 11-bit passes over key - min(key), as many as
// the keys' range needs (the depths of one avatar span a narrow range of float bits: two passes, not three).
// Each pass splits the array into one contiguous run per thread; for every digit, thread t's elements land
// after those of threads < t, so the order of equal keys is kept.
void radix_sort_pairs(std::vector<uint64_t>& v) {
  const int64_t n = (int64_t)v.size();
  if (n < 2) return;
  const int nt = num_workers(n / 16384 + 1);
  constexpr int BITS = 11, BINS = 1 << BITS;
  uint32_t lo = UINT32_MAX, hi = 0;
  for (const uint64_t x : v) { const uint32_t k = (uint32_t)(x >> 32); lo = std::min(lo, k); hi = std::max(hi, k); }
  const int key_bits = bit_length((int64_t)(hi - lo));
  std::vector<uint64_t> tmp(n);
  std::vector<int64_t> pos((size_t)nt * BINS);
  for (int shift = 0; shift < key_bits; shift += BITS) {
    std::fill(pos.begin(), pos.end(), 0);
    auto digit = [shift, lo](uint64_t x) { return (int)((((uint32_t)(x >> 32) - lo) >> shift) & (BINS - 1)); };
    at::parallel_for(0, nt, 1, [&](int64_t tb, int64_t te) {
      for (int64_t t = tb; t < te; ++t)
        for (int64_t i = n * t / nt; i < n * (t + 1) / nt; ++i) ++pos[t * BINS + digit(v[i])];
    });
    int64_t run = 0;
    for (int d = 0; d < BINS; ++d)
      for (int t = 0; t < nt; ++t) { const int64_t c = pos[t * BINS + d]; pos[t * BINS + d] = run; run += c; }
    at::parallel_for(0, nt, 1, [&](int64_t tb, int64_t te) {
      for (int64_t t = tb; t < te; ++t)
        for (int64_t i = n * t / nt; i < n * (t + 1) / nt; ++i) tmp[pos[t * BINS + digit(v[i])]++] = v[i];
    });
    v.swap(tmp);
  }
}

}  // namespace

std::vector<at::Tensor> isect_tiles(const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& depths,
                                    int64_t tile_size, int64_t tile_width, int64_t tile_height) {
  const int64_t C = depths.size(0), N = depths.size(1), n_tiles = tile_width * tile_height;
  const float* m2 = means2d.data_ptr<float>();
  const int* rad = radii.data_ptr<int>();
  const float* dep = depths.data_ptr<float>();
  const int tile_bits = bit_length(n_tiles);
  TORCH_CHECK(bit_length(C) + tile_bits + 32 <= 64, "isect_tiles: too many cameras x tiles for 64-bit ids");
  TORCH_CHECK(C * N < (int64_t(1) << 31), "isect_tiles: more than 2^31 camera-splat pairs");

  // 1. each splat's tile box [x0, x1) x [y0, y1), as the reference computes it
  at::Tensor tiles_per_gauss = at::zeros({C, N}, depths.options().dtype(at::kInt));
  int* tpg = tiles_per_gauss.data_ptr<int>();
  std::vector<int32_t> box(4 * C * N);
  const float ts = (float)tile_size;
  at::parallel_for(0, C * N, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      if (rad[2 * i] <= 0 || rad[2 * i + 1] <= 0) continue;
      const float rx = (float)rad[2 * i] / ts, ry = (float)rad[2 * i + 1] / ts;
      const float mx = m2[2 * i] / ts, my = m2[2 * i + 1] / ts;
      auto clampi = [](float v, int64_t hi) { return (int32_t)std::min<float>(std::max(v, 0.f), (float)hi); };
      int32_t* bx = &box[4 * i];
      bx[0] = clampi(std::floor(mx - rx), tile_width);  bx[1] = clampi(std::ceil(mx + rx), tile_width);
      bx[2] = clampi(std::floor(my - ry), tile_height); bx[3] = clampi(std::ceil(my + ry), tile_height);
      tpg[i] = (bx[1] - bx[0]) * (bx[3] - bx[2]);
    }
  });

  // 2. visible pairs as (depth bits << 32 | c * N + n), sorted by depth; cameras interleave, which is harmless
  // because every tile belongs to one camera
  std::vector<uint64_t> order;
  order.reserve(C * N);
  for (int64_t i = 0; i < C * N; ++i)
    if (tpg[i] > 0) order.push_back((uint64_t)float_bits(dep[i]) << 32 | (uint64_t)i);
  radix_sort_pairs(order);
  const int64_t V = (int64_t)order.size();

  // 3. boxes in that order, so the two walks below read memory sequentially
  std::vector<int32_t> sbox(4 * V);
  at::parallel_for(0, V, 8192, [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q) std::memcpy(&sbox[4 * q], &box[4 * (order[q] & 0xFFFFFFFFu)], 16);
  });

  // 4. counting sort into tiles, in parallel without breaking depth order: chunk j takes a contiguous run of the
  // sorted pairs and gets its own slice of every tile, placed after the slices of chunks < j
  const int nchunks = num_workers(V / 4096 + 1);
  auto visit = [&](int j, auto&& fn) {  // fn(flat splat index, flat tile index) for chunk j, in depth order
    for (int64_t q = V * j / nchunks; q < V * (j + 1) / nchunks; ++q) {
      const int64_t i = (int64_t)(order[q] & 0xFFFFFFFFu), base = (i / N) * n_tiles;
      const int32_t* bx = &sbox[4 * q];
      for (int32_t y = bx[2]; y < bx[3]; ++y)
        for (int32_t x = bx[0]; x < bx[1]; ++x) fn(i, base + y * tile_width + x);
    }
  };
  std::vector<std::vector<int64_t>> count(nchunks, std::vector<int64_t>(C * n_tiles, 0));
  at::parallel_for(0, nchunks, 1, [&](int64_t jb, int64_t je) {
    for (int64_t j = jb; j < je; ++j) visit((int)j, [&](int64_t, int64_t f) { ++count[j][f]; });
  });
  int64_t M = 0;  // exclusive scan over (tile, chunk): count[j][f] becomes chunk j's write position in tile f
  std::vector<int64_t> tile_start(C * n_tiles + 1);
  for (int64_t f = 0; f < C * n_tiles; ++f) {
    tile_start[f] = M;
    for (int j = 0; j < nchunks; ++j) { const int64_t n = count[j][f]; count[j][f] = M; M += n; }
  }
  tile_start[C * n_tiles] = M;

  // 5. scatter the 4-byte ids, then fill the 8-byte keys tile by tile
  at::Tensor isect_ids = at::empty({M}, depths.options().dtype(at::kLong));
  at::Tensor flatten_ids = at::empty({M}, depths.options().dtype(at::kInt));
  int64_t* iid = isect_ids.data_ptr<int64_t>();
  int32_t* fid = flatten_ids.data_ptr<int32_t>();
  at::parallel_for(0, nchunks, 1, [&](int64_t jb, int64_t je) {
    for (int64_t j = jb; j < je; ++j) visit((int)j, [&](int64_t i, int64_t f) { fid[count[j][f]++] = (int32_t)i; });
  });
  at::parallel_for(0, C * n_tiles, 64, [&](int64_t fb, int64_t fe) {
    for (int64_t f = fb; f < fe; ++f) {
      const int64_t c = f / n_tiles, head = (c << (tile_bits + 32)) | ((f - c * n_tiles) << 32);
      for (int64_t at = tile_start[f]; at < tile_start[f + 1]; ++at) iid[at] = head | (int64_t)float_bits(dep[fid[at]]);
    }
  });
  return {tiles_per_gauss, isect_ids, flatten_ids};
}

at::Tensor isect_offset_encode(const at::Tensor& isect_ids, int64_t n_cameras, int64_t tile_width,
                               int64_t tile_height) {
  const int64_t n_tiles = tile_width * tile_height, M = isect_ids.size(0);
  const int tile_bits = bit_length(n_tiles);
  at::Tensor offsets = at::empty({n_cameras, tile_height, tile_width}, isect_ids.options().dtype(at::kInt));
  int* off = offsets.data_ptr<int>();
  const int64_t* iid = isect_ids.data_ptr<int64_t>();
  // Sorted ids: each tile's list starts at the first id whose (camera, tile) key is not below its own.
  const int64_t mask = (int64_t(1) << tile_bits) - 1;
  at::parallel_for(0, n_cameras * n_tiles, 256, [&](int64_t fb, int64_t fe) {
    for (int64_t f = fb; f < fe; ++f) {
      const int64_t key = ((f / n_tiles) << tile_bits) | ((f % n_tiles) & mask);
      off[f] = (int)(std::lower_bound(iid, iid + M, key << 32) - iid);
    }
  });
  return offsets;
}

}  // namespace aa::cpu
