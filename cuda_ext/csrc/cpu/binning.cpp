// Tile binning on the CPU without a comparison sort: a stable radix sort of each camera's Gaussians by depth,
// then a parallel counting sort into tiles. Within a tile the lists come out in depth order, ties by Gaussian index,
// the same order as the reference's stable sort on (camera, tile, depth bits).
#include "../ops.h"
#include "common.h"

#include <algorithm>
#include <vector>

namespace aa::cpu {
namespace {

int bit_length(int64_t x) { int b = 0; while (x > 0) { ++b; x >>= 1; } return b; }

uint32_t float_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

// Stable LSD radix sort of `idx` by the 32-bit keys key[idx[i]]: three passes of 11 bits (bins fit in L1).
void radix_sort_by_key(std::vector<int32_t>& idx, const std::vector<uint32_t>& key) {
  std::vector<int32_t> tmp(idx.size());
  int64_t count[1 << 11];
  for (int shift = 0; shift < 32; shift += 11) {
    std::fill(count, count + (1 << 11), 0);
    for (int32_t i : idx) ++count[(key[i] >> shift) & 0x7FF];
    int64_t run = 0;
    for (auto& c : count) { int64_t n = c; c = run; run += n; }
    for (int32_t i : idx) tmp[count[(key[i] >> shift) & 0x7FF]++] = i;
    idx.swap(tmp);
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

  // 2. each camera's splats in depth order (stable radix sort: ties keep the Gaussian order)
  std::vector<std::vector<int32_t>> order(C);
  at::parallel_for(0, C, 1, [&](int64_t cb, int64_t ce) {
    std::vector<uint32_t> key(N);
    for (int64_t c = cb; c < ce; ++c) {
      for (int64_t n = 0; n < N; ++n) {
        key[n] = float_bits(dep[c * N + n]);
        if (tpg[c * N + n] > 0) order[c].push_back((int32_t)n);
      }
      radix_sort_by_key(order[c], key);
    }
  });

  // 3. counting sort into tiles, in parallel without breaking depth order: chunk j takes a contiguous run of
  // the depth order and gets its own slice of every tile, placed after the slices of chunks < j.
  const int nchunks = num_workers(C * N / 4096 + 1);
  std::vector<int64_t> begin_of(C + 1, 0);  // the depth orders of all cameras, one after another
  for (int64_t c = 0; c < C; ++c) begin_of[c + 1] = begin_of[c] + (int64_t)order[c].size();
  const int64_t total = begin_of[C];
  auto chunk_range = [&](int j) { return std::make_pair(total * j / nchunks, total * (j + 1) / nchunks); };
  auto visit = [&](int j, auto&& fn) {  // fn(c, n, flat tile index) for chunk j's splats, in order
    auto [lo, hi] = chunk_range(j);
    int64_t c = std::upper_bound(begin_of.begin(), begin_of.end(), lo) - begin_of.begin() - 1;
    for (int64_t q = lo; q < hi; ++q) {
      while (q >= begin_of[c + 1]) ++c;
      const int32_t n = order[c][q - begin_of[c]];
      const int32_t* bx = &box[4 * (c * N + n)];
      for (int32_t y = bx[2]; y < bx[3]; ++y)
        for (int32_t x = bx[0]; x < bx[1]; ++x) fn(c, n, c * n_tiles + y * tile_width + x);
    }
  };
  std::vector<std::vector<int64_t>> count(nchunks, std::vector<int64_t>(C * n_tiles, 0));
  at::parallel_for(0, nchunks, 1, [&](int64_t jb, int64_t je) {
    for (int64_t j = jb; j < je; ++j) visit((int)j, [&](int64_t, int32_t, int64_t f) { ++count[j][f]; });
  });
  int64_t M = 0;  // exclusive scan over (tile, chunk): count[j][f] becomes chunk j's write position in tile f
  std::vector<int64_t> tile_start(C * n_tiles + 1);
  for (int64_t f = 0; f < C * n_tiles; ++f) {
    tile_start[f] = M;
    for (int j = 0; j < nchunks; ++j) { const int64_t n = count[j][f]; count[j][f] = M; M += n; }
  }
  tile_start[C * n_tiles] = M;

  at::Tensor isect_ids = at::empty({M}, depths.options().dtype(at::kLong));
  at::Tensor flatten_ids = at::empty({M}, depths.options().dtype(at::kInt));
  int64_t* iid = isect_ids.data_ptr<int64_t>();
  int32_t* fid = flatten_ids.data_ptr<int32_t>();
  // Scatter only the 4-byte ids (the scattered writes are what costs), then fill the keys tile by tile.
  at::parallel_for(0, nchunks, 1, [&](int64_t jb, int64_t je) {
    for (int64_t j = jb; j < je; ++j)
      visit((int)j, [&](int64_t c, int32_t n, int64_t f) { fid[count[j][f]++] = (int32_t)(c * N + n); });
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
  // Sorted ids: walk them once, giving every tile up to the current entry's the current position.
  int64_t next_tile = 0;
  for (int64_t i = 0; i < M; ++i) {
    const int64_t key = iid[i] >> 32;
    const int64_t flat = (key >> tile_bits) * n_tiles + (key & ((int64_t(1) << tile_bits) - 1));
    for (; next_tile <= flat; ++next_tile) off[next_tile] = (int)i;
  }
  for (; next_tile < n_cameras * n_tiles; ++next_tile) off[next_tile] = (int)M;
  return offsets;
}

}  // namespace aa::cpu
