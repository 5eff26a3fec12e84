// CUDA implementations of the tensor-level ops declared in ops.h (namespace aa::cuda): allocate the outputs
// on the inputs' device, then run the raw-pointer launchers of cuda/*.cu on torch's current stream. Prefix
// sums and the stable sort of the binning step use torch's own GPU ops. bindings.cpp has already checked
// dtypes, ranks and contiguity; the checks here cover what the kernels additionally rely on.
#ifdef WITH_CUDA

// c10's stream header rather than ATen/cuda/CUDAContext.h: the latter pulls in cuBLAS / cuSPARSE headers
// this file does not need (and a toolkit without them could not build it).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <initializer_list>
#include <limits>
#include <tuple>
#include <utility>

#include "cuda/launchers.h"
#include "ops.h"

namespace aa {
namespace cuda {
namespace {

// torch's current stream on the current device (set by the CUDAGuard of each op)
cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

const float* fptr(const at::Tensor& t) { return t.data_ptr<float>(); }
float* fptr_mut(at::Tensor& t) { return t.data_ptr<float>(); }
const int32_t* iptr(const at::Tensor& t) { return t.data_ptr<int32_t>(); }

// The op was dispatched here on its first tensor's device; every other tensor must live on that same GPU
// (the kernels dereference their pointers there).
void check_devices(const at::Tensor& first, std::initializer_list<std::pair<const char*, at::Tensor>> others) {
  for (const auto& [name, t] : others)
    TORCH_CHECK(t.device() == first.device(), name, ": expected a tensor on ", first.device(), ", got one on ",
                t.device());
}

// The launchers index Gaussians with int32 (flatten_ids = c * N + n), so C * N must fit.
void check_count(int64_t C, int64_t N) {
  TORCH_CHECK(C * N <= std::numeric_limits<int32_t>::max(), "too many (camera, Gaussian) pairs for int32 ",
              "indices: C = ", C, ", N = ", N);
}

// isect_id = camera << (tile_bits + 32) | tile << 32 | depth bits must fit in a (non-negative) int64.
void check_id_bits(int64_t n_cameras, int64_t tile_width, int64_t tile_height) {
  TORCH_CHECK(bit_length(n_cameras) + bit_length(tile_width * tile_height) + 32 <= 64, "isect ids: ", n_cameras,
              " cameras x ", tile_width, " x ", tile_height, " tiles do not fit in 64-bit ids");
}

// Common checks of the two rasterisation ops; returns the tile grid (tile_width, tile_height).
std::pair<int, int> check_raster(const at::Tensor& means2d, const at::Tensor& colors, const at::Tensor& opacities,
                                 const std::optional<at::Tensor>& backgrounds, int64_t width, int64_t height,
                                 int64_t tile_size, const at::Tensor& isect_offsets) {
  const int64_t C = means2d.size(0), N = means2d.size(1);
  check_count(C, N);
  TORCH_CHECK(tile_size > 0 && tile_size * tile_size <= 1024, "tile_size: expected 1..32 (one thread per pixel, ",
              "at most 1024 a block), got ", tile_size);
  TORCH_CHECK(colors.size(0) == C && colors.size(1) == N && colors.size(2) > 0, "colors: expected [", C, ", ", N,
              ", D > 0], got ", colors.sizes());
  TORCH_CHECK(opacities.size(0) == C && opacities.size(1) == N, "opacities: expected [", C, ", ", N, "], got ",
              opacities.sizes());
  TORCH_CHECK(isect_offsets.size(0) == C, "isect_offsets: expected ", C, " cameras, got ", isect_offsets.sizes());
  const int64_t th = isect_offsets.size(1), tw = isect_offsets.size(2);
  TORCH_CHECK(tw * tile_size >= width && th * tile_size >= height, "isect_offsets: a ", tw, " x ", th,
              " grid of ", tile_size, "-pixel tiles does not cover a ", width, " x ", height, " image");
  if (backgrounds) {
    TORCH_CHECK(backgrounds->size(0) == C && backgrounds->size(1) == colors.size(2), "backgrounds: expected [",
                C, ", ", colors.size(2), "], got ", backgrounds->sizes());
    check_devices(means2d, {{"backgrounds", *backgrounds}});
  }
  return {static_cast<int>(tw), static_cast<int>(th)};
}

}  // namespace

// ------------------------------------------------------------------------------------------ projection
std::vector<at::Tensor> projection_fwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                       const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width,
                                       int64_t height, double eps2d, double near_plane, double far_plane) {
  const c10::cuda::CUDAGuard guard(means.device());
  check_devices(means, {{"quats", quats}, {"scales", scales}, {"viewmats", viewmats}, {"Ks", Ks}});
  const int64_t C = viewmats.size(0), N = means.size(0);
  check_count(C, N);
  auto fopts = means.options();
  at::Tensor radii = at::empty({C, N, 2}, fopts.dtype(at::kInt));
  at::Tensor means2d = at::empty({C, N, 2}, fopts);
  at::Tensor depths = at::empty({C, N}, fopts);
  at::Tensor conics = at::empty({C, N, 3}, fopts);
  launch_projection_fwd(fptr(means), fptr(quats), fptr(scales), fptr(viewmats), fptr(Ks), C, N, width, height,
                        static_cast<float>(eps2d), static_cast<float>(near_plane), static_cast<float>(far_plane),
                        radii.data_ptr<int32_t>(), fptr_mut(means2d), fptr_mut(depths), fptr_mut(conics), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {radii, means2d, depths, conics};
}

std::vector<at::Tensor> projection_bwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                       const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width,
                                       int64_t height, double eps2d, const at::Tensor& radii,
                                       const at::Tensor& conics, const at::Tensor& v_means2d,
                                       const at::Tensor& v_depths, const at::Tensor& v_conics) {
  (void)conics;  // the backward recomputes the projection state instead
  const c10::cuda::CUDAGuard guard(means.device());
  check_devices(means, {{"quats", quats}, {"scales", scales}, {"viewmats", viewmats}, {"Ks", Ks}, {"radii", radii},
                        {"v_means2d", v_means2d}, {"v_depths", v_depths}, {"v_conics", v_conics}});
  const int64_t C = viewmats.size(0), N = means.size(0);
  check_count(C, N);
  at::Tensor v_means = at::zeros_like(means);    // accumulated over cameras
  at::Tensor v_quats = at::zeros_like(quats);
  at::Tensor v_scales = at::zeros_like(scales);
  launch_projection_bwd(fptr(means), fptr(quats), fptr(scales), fptr(viewmats), fptr(Ks), C, N, width, height,
                        static_cast<float>(eps2d), iptr(radii), fptr(v_means2d), fptr(v_depths), fptr(v_conics),
                        fptr_mut(v_means), fptr_mut(v_quats), fptr_mut(v_scales), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {v_means, v_quats, v_scales};
}

// --------------------------------------------------------------------------------- spherical harmonics
at::Tensor sh_fwd(int64_t degree, const at::Tensor& dirs, const at::Tensor& coeffs) {
  const c10::cuda::CUDAGuard guard(dirs.device());
  check_devices(dirs, {{"coeffs", coeffs}});
  const int64_t P = dirs.size(0), K = coeffs.size(1);
  TORCH_CHECK(coeffs.size(0) == P && coeffs.size(2) == 3, "coeffs: expected [", P, ", K, 3], got ", coeffs.sizes());
  at::Tensor colors = at::empty({P, 3}, dirs.options());
  launch_sh_fwd(static_cast<int>(degree), P, static_cast<int>(K), fptr(dirs), fptr(coeffs), fptr_mut(colors),
                stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return colors;
}

std::vector<at::Tensor> sh_bwd(int64_t degree, const at::Tensor& dirs, const at::Tensor& coeffs,
                               const at::Tensor& v_colors) {
  const c10::cuda::CUDAGuard guard(dirs.device());
  check_devices(dirs, {{"coeffs", coeffs}, {"v_colors", v_colors}});
  const int64_t P = dirs.size(0), K = coeffs.size(1);
  at::Tensor v_dirs = at::empty_like(dirs);      // every element is written by the kernel
  at::Tensor v_coeffs = at::empty_like(coeffs);
  launch_sh_bwd(static_cast<int>(degree), P, static_cast<int>(K), fptr(dirs), fptr(coeffs), fptr(v_colors),
                fptr_mut(v_dirs), fptr_mut(v_coeffs), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {v_dirs, v_coeffs};
}

// ------------------------------------------------------------------------------------------- binning
std::vector<at::Tensor> isect_tiles(const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& depths,
                                    int64_t tile_size, int64_t tile_width, int64_t tile_height) {
  const c10::cuda::CUDAGuard guard(means2d.device());
  check_devices(means2d, {{"radii", radii}, {"depths", depths}});
  const int64_t C = depths.size(0), N = depths.size(1);
  check_count(C, N);
  check_id_bits(C, tile_width, tile_height);
  const auto opts = means2d.options();
  // 1. tiles touched per splat [C, N]
  at::Tensor tiles_per_gauss = at::empty({C, N}, opts.dtype(at::kInt));
  launch_isect_count(fptr(means2d), iptr(radii), C * N, tile_size, tile_width, tile_height,
                     tiles_per_gauss.data_ptr<int32_t>(), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // 2. inclusive prefix sum (int64) -> each splat's write position; its last element is M (one host sync)
  const at::Tensor cum_counts = at::cumsum(tiles_per_gauss.view({-1}), 0, at::kLong);
  const int64_t M = C * N > 0 ? cum_counts[-1].item<int64_t>() : 0;
  TORCH_CHECK(M <= std::numeric_limits<int32_t>::max(), "isect_tiles: ", M, " tile intersections overflow the ",
              "int32 tile offsets");
  at::Tensor isect_ids = at::empty({M}, opts.dtype(at::kLong));
  at::Tensor flatten_ids = at::empty({M}, opts.dtype(at::kInt));
  if (M == 0) return {tiles_per_gauss, isect_ids, flatten_ids};
  // 3. unsorted entries, grouped by splat in flat (c, n) order
  launch_isect_write(fptr(means2d), iptr(radii), fptr(depths), iptr(tiles_per_gauss),
                     cum_counts.data_ptr<int64_t>(), C, N, tile_size, tile_width, tile_height,
                     isect_ids.data_ptr<int64_t>(), flatten_ids.data_ptr<int32_t>(), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // 4. stable sort by (camera, tile, depth): equal keys keep the splat order
  auto [sorted_ids, order] = at::sort(isect_ids, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  return {tiles_per_gauss, sorted_ids, flatten_ids.index_select(0, order)};
}

at::Tensor isect_offset_encode(const at::Tensor& isect_ids, int64_t n_cameras, int64_t tile_width,
                               int64_t tile_height) {
  const c10::cuda::CUDAGuard guard(isect_ids.device());
  check_id_bits(n_cameras, tile_width, tile_height);
  at::Tensor offsets = at::empty({n_cameras, tile_height, tile_width}, isect_ids.options().dtype(at::kInt));
  launch_isect_offset_encode(isect_ids.data_ptr<int64_t>(), isect_ids.numel(), n_cameras, tile_width,
                             tile_height, offsets.data_ptr<int32_t>(), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return offsets;
}

// ---------------------------------------------------------------------------------------- compositing
std::vector<at::Tensor> rasterize_fwd(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                      const at::Tensor& opacities, const std::optional<at::Tensor>& backgrounds,
                                      int64_t width, int64_t height, int64_t tile_size,
                                      const at::Tensor& isect_offsets, const at::Tensor& flatten_ids) {
  const c10::cuda::CUDAGuard guard(means2d.device());
  check_devices(means2d, {{"conics", conics}, {"colors", colors}, {"opacities", opacities},
                          {"isect_offsets", isect_offsets}, {"flatten_ids", flatten_ids}});
  const auto [tw, th] = check_raster(means2d, colors, opacities, backgrounds, width, height, tile_size,
                                     isect_offsets);
  const int64_t C = means2d.size(0), N = means2d.size(1), D = colors.size(2);
  const auto opts = means2d.options();
  at::Tensor render_colors = at::empty({C, height, width, D}, opts);  // every pixel is written
  at::Tensor render_alphas = at::empty({C, height, width, 1}, opts);
  at::Tensor last_ids = at::empty({C, height, width}, opts.dtype(at::kInt));
  at::Tensor final_Ts = at::empty({C, height, width, 1}, opts);
  launch_rasterize_fwd(fptr(means2d), fptr(conics), fptr(colors), fptr(opacities),
                       backgrounds ? fptr(*backgrounds) : nullptr, C, N, D, width, height, tile_size, tw, th,
                       iptr(isect_offsets), iptr(flatten_ids), flatten_ids.numel(), fptr_mut(render_colors),
                       fptr_mut(render_alphas), last_ids.data_ptr<int32_t>(), fptr_mut(final_Ts), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {render_colors, render_alphas, last_ids, final_Ts};
}

std::vector<at::Tensor> rasterize_bwd(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                      const at::Tensor& opacities, const std::optional<at::Tensor>& backgrounds,
                                      int64_t width, int64_t height, int64_t tile_size,
                                      const at::Tensor& isect_offsets, const at::Tensor& flatten_ids,
                                      const at::Tensor& final_Ts, const at::Tensor& last_ids,
                                      const at::Tensor& v_render_colors, const at::Tensor& v_render_alphas) {
  const c10::cuda::CUDAGuard guard(means2d.device());
  check_devices(means2d, {{"conics", conics}, {"colors", colors}, {"opacities", opacities},
                          {"isect_offsets", isect_offsets}, {"flatten_ids", flatten_ids},
                          {"final_Ts", final_Ts}, {"last_ids", last_ids},
                          {"v_render_colors", v_render_colors}, {"v_render_alphas", v_render_alphas}});
  const auto [tw, th] = check_raster(means2d, colors, opacities, backgrounds, width, height, tile_size,
                                     isect_offsets);
  const int64_t C = means2d.size(0), N = means2d.size(1), D = colors.size(2);
  at::Tensor v_means2d = at::zeros_like(means2d);  // accumulated with atomics
  at::Tensor v_conics = at::zeros_like(conics);
  at::Tensor v_colors = at::zeros_like(colors);
  at::Tensor v_opacities = at::zeros_like(opacities);
  launch_rasterize_bwd(fptr(means2d), fptr(conics), fptr(colors), fptr(opacities),
                       backgrounds ? fptr(*backgrounds) : nullptr, C, N, D, width, height, tile_size, tw, th,
                       iptr(isect_offsets), iptr(flatten_ids), flatten_ids.numel(), fptr(final_Ts),
                       iptr(last_ids), fptr(v_render_colors), fptr(v_render_alphas), fptr_mut(v_means2d),
                       fptr_mut(v_conics), fptr_mut(v_colors), fptr_mut(v_opacities), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {v_means2d, v_conics, v_colors, v_opacities};
}

// -------------------------------------------------------------------------------------------- input checks
at::Tensor value_flags(const std::vector<at::Tensor>& segments) {
  const c10::cuda::CUDAGuard guard(segments[0].device());
  ValueSegments segs{};
  for (int s = 0; s < kNumSegments; ++s) {
    check_devices(segments[0], {{"value_flags segment", segments[s]}});
    segs.data[s] = fptr(segments[s]);
    segs.numel[s] = segments[s].numel();
  }
  at::Tensor mask = at::zeros({1}, segments[0].options().dtype(at::kInt));
  launch_value_flags(segs, mask.data_ptr<int32_t>(), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return mask;
}

}  // namespace cuda
}  // namespace aa

#endif  // WITH_CUDA
