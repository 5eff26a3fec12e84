// Backward of the CPU compositor. Each tile walks its splats back to front from the last one any pixel
// blended, recovering each pixel's transmittance by division (T_i = T_{i+1} / (1 - alpha_i)) and the colour
// behind it (S). Gradients land in one slot per tile intersection, then a fixed-order reduction per channel
// sums them per splat: the result does not depend on thread timing. Semantics: cuda_ext/reference.py.
#include "../ops.h"
#include "raster_common.h"

namespace aa::cpu {

std::vector<at::Tensor> rasterize_bwd(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                      const at::Tensor& opacities, const std::optional<at::Tensor>& backgrounds,
                                      int64_t width, int64_t height, int64_t tile_size,
                                      const at::Tensor& isect_offsets, const at::Tensor& flatten_ids,
                                      const at::Tensor& final_Ts, const at::Tensor& last_ids,
                                      const at::Tensor& v_render_colors, const at::Tensor& v_render_alphas) {
  const int64_t C = means2d.size(0), N = means2d.size(1), D = colors.size(2);
  const int64_t th = isect_offsets.size(1), tw = isect_offsets.size(2), M = flatten_ids.size(0);
  const int ts = (int)tile_size, halves = (ts + LANES - 1) / LANES, stride = halves * LANES, P = ts * stride;
  const int64_t NCH = 6 + D;  // per intersection: mean2d x y, conic a b c, opacity, colours

  const std::vector<Splat> splats = gather_splats(means2d.data_ptr<float>(), conics.data_ptr<float>(),
                                                  opacities.data_ptr<float>(), C * N);
  const float* col = colors.data_ptr<float>();
  const float* bg = backgrounds ? backgrounds->data_ptr<float>() : nullptr;
  const int* offsets = isect_offsets.data_ptr<int>();
  const int* ids = flatten_ids.data_ptr<int>();
  const float *fT = final_Ts.data_ptr<float>(), *vrc = v_render_colors.data_ptr<float>();
  const float* vra = v_render_alphas.data_ptr<float>();
  const int* lids = last_ids.data_ptr<int>();
  std::vector<float> grads(NCH * M);  // channel-major: grads[ch * M + k]

  const int64_t n_tiles = C * th * tw;
  const int nw = num_workers(n_tiles);
  struct Scratch {
    AlignedBuf T, Tf, vA, last, S, vC;
    std::vector<F8> vcol;
  };
  std::vector<Scratch> scratch(nw);
  for (auto& sc : scratch) {
    sc.T.resize(P); sc.Tf.resize(P); sc.vA.resize(P); sc.last.resize(P);
    sc.S.resize(D * P); sc.vC.resize(D * P); sc.vcol.resize(D);
  }

  const std::vector<int64_t> order = tiles_longest_first(offsets, M, n_tiles);
  parallel_dynamic(n_tiles, [&](int64_t i, int w) {
    const int64_t fi = order[i];
    const Tile t = tile_at(fi, tw, th, ts, width, height, offsets, M, n_tiles);
    Scratch& sc = scratch[w];
    // Per-pixel state from the forward's outputs; pixels outside the image get last = -1 (never count).
    int64_t kmax = t.begin - 1;
    for (int r = 0; r < ts; ++r)
      for (int x = 0; x < stride; ++x) {
        const int p = r * stride + x;
        const bool in = r < t.h && x < t.w;
        const int64_t o = (t.cam * height + t.y0 + r) * width + t.x0 + x;
        const float Tfin = in ? fT[o] : 1.f;
        sc.T[p] = sc.Tf[p] = Tfin;
        sc.vA[p] = in ? vra[o] : 0.f;
        sc.last[p] = in ? (float)(lids[o] - t.begin) : -1.f;  // tile-relative, exact in float
        if (in) kmax = std::max<int64_t>(kmax, lids[o]);
        for (int64_t d = 0; d < D; ++d) {
          sc.S[d * P + p] = (in && bg) ? Tfin * bg[t.cam * D + d] : 0.f;
          sc.vC[d * P + p] = in ? vrc[o * D + d] : 0.f;
        }
      }
    const F8 lane = F8::iota() + F8::set1(0.5f), one = F8::set1(1.f), zero = F8::set1(0.f), half = F8::set1(0.5f);

    for (int64_t k = t.end - 1; k >= t.begin; --k) {
      float g_out[6] = {0, 0, 0, 0, 0, 0};
      const int64_t g = ids[k];
      const Splat& s = splats[g];
      Window win;
      const bool live = k <= kmax && splat_window(s, t, win);
      if (!live) {
        for (int64_t ch = 0; ch < NCH; ++ch) grads[ch * M + k] = 0.f;
        continue;
      }
      const float* cg = col + g * D;
      F8 vmx = zero, vmy = zero, vc0 = zero, vc1 = zero, vc2 = zero, vop = zero;
      for (int64_t d = 0; d < D; ++d) sc.vcol[d] = zero;
      const F8 kr = F8::set1((float)(k - t.begin)), ca = F8::set1(s.ca), cb = F8::set1(s.cb), cc = F8::set1(s.cc);
      const F8 op = F8::set1(s.op);
      for (int r = win.r0; r <= win.r1; ++r) {
        const RowForm rf = row_form(s, (float)(t.y0 + r) + 0.5f);
        for (int h = win.h0; h <= win.h1; ++h) {
          const int p = r * stride + h * LANES;
          Eval e;
          const M8 near = eval_power(s, rf, F8::set1((float)(t.x0 + h * LANES)) + lane, e);
          if (!bits(near & (F8::load(sc.last.data() + p) >= kr))) continue;
          eval_alpha(s, e);
          const M8 ok = e.ok & (F8::load(sc.last.data() + p) >= kr);
          if (!bits(ok)) continue;
          const F8 ra = one / (one - e.alpha);
          const F8 Tp = select(ok, F8::load(sc.T.data() + p) * ra, F8::load(sc.T.data() + p));
          Tp.store(sc.T.data() + p);
          const F8 wgt = e.alpha * Tp;
          F8 v_alpha = F8::load(sc.vA.data() + p) * F8::load(sc.Tf.data() + p) * ra;
          for (int64_t d = 0; d < D; ++d) {
            float* Sd = sc.S.data() + d * P + p;
            const F8 vc = F8::load(sc.vC.data() + d * P + p), cd = F8::set1(cg[d]), S = F8::load(Sd);
            v_alpha = v_alpha + vc * (cd * Tp - S * ra);
            select(ok, fma(cd, wgt, S), S).store(Sd);
            sc.vcol[d] = sc.vcol[d] + select(ok, wgt * vc, zero);
          }
          const M8 unclamped = andnot(ok, op * e.vis > F8::set1(ALPHA_MAX));
          const F8 vpow = select(unclamped, zero - op * e.vis * v_alpha, zero);
          vop = vop + select(unclamped, e.vis * v_alpha, zero);
          vc0 = fma(half * e.dx * e.dx, vpow, vc0);
          vc1 = fma(e.dx * e.dy, vpow, vc1);
          vc2 = fma(half * e.dy * e.dy, vpow, vc2);
          vmx = fma(vpow, ca * e.dx + cb * e.dy, vmx);
          vmy = fma(vpow, cb * e.dx + cc * e.dy, vmy);
        }
      }
      g_out[0] = hsum(vmx); g_out[1] = hsum(vmy); g_out[2] = hsum(vc0); g_out[3] = hsum(vc1);
      g_out[4] = hsum(vc2); g_out[5] = hsum(vop);
      for (int ch = 0; ch < 6; ++ch) grads[ch * M + k] = g_out[ch];
      for (int64_t d = 0; d < D; ++d) grads[(6 + d) * M + k] = hsum(sc.vcol[d]);
    }
  });

  // Sum the per-intersection gradients per splat, one channel per item, in intersection order.
  auto f = means2d.options();
  at::Tensor v_means2d = at::zeros({C, N, 2}, f), v_conics = at::zeros({C, N, 3}, f);
  at::Tensor v_colors = at::zeros({C, N, D}, f), v_opac = at::zeros({C, N}, f);
  at::parallel_for(0, NCH, 1, [&](int64_t b, int64_t e) {
    for (int64_t ch = b; ch < e; ++ch) {
      float* dst;
      int64_t step;
      if (ch < 2) { dst = v_means2d.data_ptr<float>() + ch; step = 2; }
      else if (ch < 5) { dst = v_conics.data_ptr<float>() + (ch - 2); step = 3; }
      else if (ch == 5) { dst = v_opac.data_ptr<float>(); step = 1; }
      else { dst = v_colors.data_ptr<float>() + (ch - 6); step = D; }
      const float* src = grads.data() + ch * M;
      for (int64_t k = 0; k < M; ++k) dst[ids[k] * step] += src[k];
    }
  });
  return {v_means2d, v_conics, v_colors, v_opac};
}

}  // namespace aa::cpu
