// Front-to-back compositing on the CPU. Each worker takes whole tiles; inside a tile it walks the splats in
// depth order and blends only the rows and 8-pixel half-rows a splat can reach, 8 pixels per vector op.
// A tile stops once every pixel's transmittance is spent. Semantics: cuda_ext/reference.py.
#include "../ops.h"
#include "raster_common.h"

namespace aa::cpu {

std::vector<at::Tensor> rasterize_fwd(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                      const at::Tensor& opacities, const std::optional<at::Tensor>& backgrounds,
                                      int64_t width, int64_t height, int64_t tile_size,
                                      const at::Tensor& isect_offsets, const at::Tensor& flatten_ids) {
  const int64_t C = means2d.size(0), N = means2d.size(1), D = colors.size(2);
  const int64_t th = isect_offsets.size(1), tw = isect_offsets.size(2), M = flatten_ids.size(0);
  const int ts = (int)tile_size, halves = (ts + LANES - 1) / LANES, stride = halves * LANES;
  auto f = means2d.options();
  at::Tensor out_colors = at::empty({C, height, width, D}, f), out_alphas = at::empty({C, height, width, 1}, f);
  at::Tensor last_ids = at::empty({C, height, width}, f.dtype(at::kInt));
  at::Tensor final_T = at::empty({C, height, width, 1}, f);

  const std::vector<Splat> splats = gather_splats(means2d.data_ptr<float>(), conics.data_ptr<float>(),
                                                  opacities.data_ptr<float>(), C * N);
  const float* col = colors.data_ptr<float>();
  const float* bg = backgrounds ? backgrounds->data_ptr<float>() : nullptr;
  const int* offsets = isect_offsets.data_ptr<int>();
  const int* ids = flatten_ids.data_ptr<int>();
  float *oc = out_colors.data_ptr<float>(), *oa = out_alphas.data_ptr<float>(), *oT = final_T.data_ptr<float>();
  int* ol = last_ids.data_ptr<int>();

  const int64_t n_tiles = C * th * tw;
  const int nw = num_workers(n_tiles);
  // Per-worker tile buffers: transmittance, active flag, last blended index, colour (channel-major).
  std::vector<std::vector<float>> T_buf(nw, std::vector<float>(ts * stride)), act_buf = T_buf;
  std::vector<std::vector<float>> col_buf(nw, std::vector<float>(D * ts * stride));
  std::vector<std::vector<int>> last_buf(nw, std::vector<int>(ts * stride));

  parallel_dynamic(n_tiles, [&](int64_t fi, int w) {
    const Tile t = tile_at(fi, tw, th, ts, width, height, offsets, M, n_tiles);
    float *T = T_buf[w].data(), *act = act_buf[w].data(), *acc = col_buf[w].data();
    int* last = last_buf[w].data();
    std::fill(acc, acc + D * ts * stride, 0.f);
    std::vector<int> half_active(ts * halves, 0);
    int tile_active = 0;
    for (int r = 0; r < ts; ++r)
      for (int x = 0; x < stride; ++x) {
        const bool in = r < t.h && x < t.w;
        T[r * stride + x] = 1.f;
        act[r * stride + x] = in ? 1.f : 0.f;
        last[r * stride + x] = (int)t.begin - 1;
        half_active[r * halves + x / LANES] += in;
        tile_active += in;
      }
    const F8 lane = F8::iota() + F8::set1(0.5f), one = F8::set1(1.f), zero = F8::set1(0.f);

    for (int64_t k = t.begin; k < t.end && tile_active > 0; ++k) {
      const int64_t g = ids[k];
      const Splat& s = splats[g];
      if (s.op < ALPHA_MIN) continue;  // can never reach alpha 1/255
      Window win;
      if (!splat_window(s, t, ts, win)) continue;
      const float* cg = col + g * D;
      for (int r = win.r0; r <= win.r1; ++r) {
        const float py = (float)(t.y0 + r) + 0.5f;
        for (int h = win.h0; h <= win.h1; ++h) {
          if (half_active[r * halves + h] == 0) continue;
          const int p = r * stride + h * LANES;
          const Eval e = eval_splat(s, F8::set1((float)(t.x0 + h * LANES)) + lane, py);
          const M8 ok = e.ok & (F8::load(act + p) > zero);
          if (!bits(ok)) continue;
          const F8 Tp = F8::load(T + p), next_T = Tp * (one - e.alpha);
          const M8 stop = ok & (next_T < F8::set1(T_MIN));  // this splat would spend the pixel: not blended
          const M8 blend = andnot(ok, stop);
          if (const int sb = bits(stop)) {
            select(stop, zero, F8::load(act + p)).store(act + p);
            const int n = __builtin_popcount(sb);
            half_active[r * halves + h] -= n;
            tile_active -= n;
          }
          const int bb = bits(blend);
          if (!bb) continue;
          const F8 wgt = select(blend, e.alpha * Tp, zero);
          for (int64_t d = 0; d < D; ++d) {
            float* a = acc + d * ts * stride + p;
            fma(wgt, F8::set1(cg[d]), F8::load(a)).store(a);
          }
          select(blend, next_T, Tp).store(T + p);
          for (int l = 0; l < LANES; ++l)
            if (bb >> l & 1) last[p + l] = (int)k;
        }
      }
    }

    // Write the tile: colour + T * background, alpha = 1 - T.
    for (int r = 0; r < t.h; ++r)
      for (int x = 0; x < t.w; ++x) {
        const int p = r * stride + x;
        const int64_t o = (t.cam * height + t.y0 + r) * width + t.x0 + x;
        for (int64_t d = 0; d < D; ++d) oc[o * D + d] = acc[d * ts * stride + p] + (bg ? T[p] * bg[t.cam * D + d] : 0.f);
        oa[o] = 1.f - T[p];
        oT[o] = T[p];
        ol[o] = last[p];
      }
  });
  return {out_colors, out_alphas, last_ids, final_T};
}

}  // namespace aa::cpu
