// The one binding file: checks tensor arguments, then dispatches each op to the CPU or CUDA implementation.
#include "ops.h"
#include "value_rules.h"

namespace aa {
namespace {

void check(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t dim) {
  TORCH_CHECK(t.scalar_type() == dtype, name, ": expected dtype ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.dim() == dim, name, ": expected ", dim, " dims, got shape ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), name, ": must be contiguous");
}
void checkf(const at::Tensor& t, const char* name, int64_t dim) { check(t, name, at::kFloat, dim); }

#ifdef WITH_CUDA
#define AA_DISPATCH(tensor, fn, ...) ((tensor).is_cuda() ? cuda::fn(__VA_ARGS__) : cpu::fn(__VA_ARGS__))
#else
void require_cpu(const at::Tensor& t, const char* fn) {
  TORCH_CHECK(!t.is_cuda(), fn, ": this build has no CUDA kernels (torch was built without CUDA)");
}
#define AA_DISPATCH(tensor, fn, ...) (require_cpu(tensor, #fn), cpu::fn(__VA_ARGS__))
#endif

std::vector<at::Tensor> projection_fwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                       const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width,
                                       int64_t height, double eps2d, double near_plane, double far_plane) {
  checkf(means, "means", 2); checkf(quats, "quats", 2); checkf(scales, "scales", 2);
  checkf(viewmats, "viewmats", 3); checkf(Ks, "Ks", 3);
  return AA_DISPATCH(means, projection_fwd, means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane,
                     far_plane);
}

std::vector<at::Tensor> projection_bwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                       const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width,
                                       int64_t height, double eps2d, const at::Tensor& radii,
                                       const at::Tensor& conics, const at::Tensor& v_means2d,
                                       const at::Tensor& v_depths, const at::Tensor& v_conics) {
  check(radii, "radii", at::kInt, 3);
  checkf(v_means2d, "v_means2d", 3); checkf(v_depths, "v_depths", 2); checkf(v_conics, "v_conics", 3);
  return AA_DISPATCH(means, projection_bwd, means, quats, scales, viewmats, Ks, width, height, eps2d, radii, conics,
                     v_means2d, v_depths, v_conics);
}

at::Tensor sh_fwd(int64_t degree, const at::Tensor& dirs, const at::Tensor& coeffs) {
  TORCH_CHECK(degree >= 0 && degree <= 3, "sh degree must be in 0..3, got ", degree);
  checkf(dirs, "dirs", 2); checkf(coeffs, "coeffs", 3);
  TORCH_CHECK(coeffs.size(1) >= (degree + 1) * (degree + 1), "coeffs: too few SH coefficients for degree ", degree);
  return AA_DISPATCH(dirs, sh_fwd, degree, dirs, coeffs);
}

std::vector<at::Tensor> sh_bwd(int64_t degree, const at::Tensor& dirs, const at::Tensor& coeffs,
                               const at::Tensor& v_colors) {
  checkf(v_colors, "v_colors", 2);
  return AA_DISPATCH(dirs, sh_bwd, degree, dirs, coeffs, v_colors);
}

std::vector<at::Tensor> isect_tiles(const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& depths,
                                    int64_t tile_size, int64_t tile_width, int64_t tile_height) {
  checkf(means2d, "means2d", 3); check(radii, "radii", at::kInt, 3); checkf(depths, "depths", 2);
  return AA_DISPATCH(means2d, isect_tiles, means2d, radii, depths, tile_size, tile_width, tile_height);
}

at::Tensor isect_offset_encode(const at::Tensor& isect_ids, int64_t n_cameras, int64_t tile_width,
                               int64_t tile_height) {
  check(isect_ids, "isect_ids", at::kLong, 1);
  return AA_DISPATCH(isect_ids, isect_offset_encode, isect_ids, n_cameras, tile_width, tile_height);
}

std::vector<at::Tensor> rasterize_fwd(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                      const at::Tensor& opacities, const std::optional<at::Tensor>& backgrounds,
                                      int64_t width, int64_t height, int64_t tile_size,
                                      const at::Tensor& isect_offsets, const at::Tensor& flatten_ids) {
  checkf(means2d, "means2d", 3); checkf(conics, "conics", 3); checkf(colors, "colors", 3);
  checkf(opacities, "opacities", 2); check(isect_offsets, "isect_offsets", at::kInt, 3);
  check(flatten_ids, "flatten_ids", at::kInt, 1);
  if (backgrounds) checkf(*backgrounds, "backgrounds", 2);
  return AA_DISPATCH(means2d, rasterize_fwd, means2d, conics, colors, opacities, backgrounds, width, height,
                     tile_size, isect_offsets, flatten_ids);
}

std::vector<at::Tensor> rasterize_bwd(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                      const at::Tensor& opacities, const std::optional<at::Tensor>& backgrounds,
                                      int64_t width, int64_t height, int64_t tile_size,
                                      const at::Tensor& isect_offsets, const at::Tensor& flatten_ids,
                                      const at::Tensor& final_Ts, const at::Tensor& last_ids,
                                      const at::Tensor& v_render_colors, const at::Tensor& v_render_alphas) {
  checkf(final_Ts, "final_Ts", 4); check(last_ids, "last_ids", at::kInt, 3);
  checkf(v_render_colors, "v_render_colors", 4); checkf(v_render_alphas, "v_render_alphas", 4);
  return AA_DISPATCH(means2d, rasterize_bwd, means2d, conics, colors, opacities, backgrounds, width, height,
                     tile_size, isect_offsets, flatten_ids, final_Ts, last_ids, v_render_colors,
                     v_render_alphas);
}

at::Tensor value_flags(const std::vector<at::Tensor>& segments) {
  TORCH_CHECK(segments.size() == kNumSegments, "value_flags: expected ", static_cast<int>(kNumSegments),
              " tensors (means, quats, scales, opacities, viewmats, Ks, colors), got ", segments.size());
  for (int s = 0; s < kNumSegments; ++s) {
    const at::Tensor& t = segments[s];
    TORCH_CHECK(t.scalar_type() == at::kFloat && t.is_contiguous(), "value_flags: tensor ", s,
                " must be contiguous float32");
    TORCH_CHECK(t.numel() % segment_width(s) == 0, "value_flags: tensor ", s, " has ", t.numel(),
                " values, not a multiple of its row width ", segment_width(s));
  }
  return AA_DISPATCH(segments[0], value_flags, segments);
}

}  // namespace
}  // namespace aa

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "AudioAvatar splatting kernels (C++ CPU, and CUDA when built with it)";
  // The kernels touch only tensors, never Python objects: they run without the GIL, so other Python threads
  // (a server's event loop, another session's JPEG encoding) keep going while a frame renders.
  using nogil = py::call_guard<py::gil_scoped_release>;
  m.def("projection_fwd", &aa::projection_fwd, nogil());
  m.def("projection_bwd", &aa::projection_bwd, nogil());
  m.def("sh_fwd", &aa::sh_fwd, nogil());
  m.def("sh_bwd", &aa::sh_bwd, nogil());
  m.def("isect_tiles", &aa::isect_tiles, nogil());
  m.def("isect_offset_encode", &aa::isect_offset_encode, nogil());
  m.def("rasterize_fwd", &aa::rasterize_fwd, nogil());
  m.def("rasterize_bwd", &aa::rasterize_bwd, nogil());
  m.def("value_flags", &aa::value_flags, nogil());
#ifdef WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
