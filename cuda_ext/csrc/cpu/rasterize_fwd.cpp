// Front-to-back compositing on the CPU. Each worker takes whole tiles; inside a tile it walks the splats in
// depth order and blends only the rows and 8-pixel half-rows a splat can reach, 8 pixels per vector op,
// skipping the exp where no lane is in reach. A tile stops once every pixel's transmittance is spent.
// Semantics: cuda_ext/reference.py.
#include "../ops.h"
#include "raster_common.h"

namespace aa::cpu {
namespace {

// Everything a tile needs, shared read-only by the workers.
struct FwdArgs {
  const Splat* splats;
  const float *colors, *bg;
  const int *offsets, *ids;
  int64_t D, width, height, tw, th, M, n_tiles;
  int ts, halves, stride;
  float *out_colors, *out_alphas, *out_T;
  int* out_last;
};

// Per-worker tile state: transmittance, active flag (1/0), last blended index (tile-relative, exact in
// float), colour accumulators (channel-major), and active-pixel counts per half-row.
struct TileState {
  AlignedBuf T, act, last, acc;
  std::vector<int> half_active;
};

// DC: the channel count when known at compile time (1, 3, 4), or 0 to use a.D.
template <int DC>
void composite_tile(const FwdArgs& a, int64_t fi, TileState& st) {
  const int64_t D = DC > 0 ? DC : a.D;
  const int ts = a.ts, halves = a.halves, stride = a.stride, P = ts * stride;
  const Tile t = tile_at(fi, a.tw, a.th, ts, a.width, a.height, a.offsets, a.M, a.n_tiles);
  float *T = st.T.data(), *act = st.act.data(), *last = st.last.data(), *acc = st.acc.data();
  int* half_active = st.half_active.data();
  std::fill(acc, acc + D * P, 0.f);
  std::fill(half_active, half_active + ts * halves, 0);
  int tile_active = 0;
  for (int r = 0; r < ts; ++r)
    for (int x = 0; x < stride; ++x) {
      const bool in = r < t.h && x < t.w;
      T[r * stride + x] = 1.f;
      act[r * stride + x] = in ? 1.f : 0.f;
      last[r * stride + x] = -1.f;
      half_active[r * halves + x / LANES] += in;
      tile_active += in;
    }
  const F8 lane = F8::iota() + F8::set1(0.5f), one = F8::set1(1.f), zero = F8::set1(0.f);

  constexpr int64_t AHEAD = 8;  // prefetch distance in list entries: splats and colours are random reads
  for (int64_t k = t.begin; k < t.end && tile_active > 0; ++k) {
    if (k + AHEAD < t.end) {
      __builtin_prefetch(a.splats + a.ids[k + AHEAD]);
      __builtin_prefetch(a.colors + a.ids[k + AHEAD] * D);
    }
    const int64_t g = a.ids[k];
    const Splat& s = a.splats[g];
    Window win;
    if (!splat_window(s, t, win)) continue;
    const float* cg = a.colors + g * D;
    const F8 kr = F8::set1((float)(k - t.begin));
    for (int r = win.r0; r <= win.r1; ++r) {
      const RowForm rf = row_form(s, (float)(t.y0 + r) + 0.5f);
      for (int h = win.h0; h <= win.h1; ++h) {
        if (half_active[r * halves + h] == 0) continue;
        const int p = r * stride + h * LANES;
        Eval e;
        const M8 near = eval_power(s, rf, F8::set1((float)(t.x0 + h * LANES)) + lane, e);
        if (!bits(near & (F8::load(act + p) > zero))) continue;
        eval_alpha(s, e);
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
        if (!bits(blend)) continue;
        const F8 wgt = select(blend, e.alpha * Tp, zero);
        for (int64_t d = 0; d < D; ++d) {
          float* ad = acc + d * P + p;
          fma(wgt, F8::set1(cg[d]), F8::load(ad)).store(ad);
        }
        select(blend, next_T, Tp).store(T + p);
        select(blend, kr, F8::load(last + p)).store(last + p);
      }
    }
  }

  // Write the tile: colour + T * background, alpha = 1 - T, and T itself for the backward.
  // One plain loop per output, so the compiler vectorises each (the colours interleave channels).
  const int begin = (int)t.begin;
  for (int r = 0; r < t.h; ++r) {
    const int p0 = r * stride;
    const int64_t o0 = (t.cam * a.height + t.y0 + r) * a.width + t.x0;
    const float* Tr = T + p0;
    float *alphas = a.out_alphas + o0, *Ts = a.out_T + o0;
    int* lasts = a.out_last + o0;
    for (int x = 0; x < t.w; ++x) alphas[x] = 1.f - Tr[x];
    for (int x = 0; x < t.w; ++x) Ts[x] = Tr[x];
    for (int x = 0; x < t.w; ++x) lasts[x] = begin + (int)last[p0 + x];
    float* colors = a.out_colors + o0 * D;
    for (int64_t d = 0; d < D; ++d) {
      const float* ad = acc + d * P + p0;
      const float bg = a.bg ? a.bg[t.cam * D + d] : 0.f;
      for (int x = 0; x < t.w; ++x) colors[x * D + d] = ad[x] + Tr[x] * bg;
    }
  }
}

}  // namespace

std::vector<at::Tensor> rasterize_fwd(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                      const at::Tensor& opacities, const std::optional<at::Tensor>& backgrounds,
                                      int64_t width, int64_t height, int64_t tile_size,
                                      const at::Tensor& isect_offsets, const at::Tensor& flatten_ids) {
  const int64_t C = means2d.size(0), N = means2d.size(1), D = colors.size(2);
  auto f = means2d.options();
  at::Tensor out_colors = at::empty({C, height, width, D}, f), out_alphas = at::empty({C, height, width, 1}, f);
  at::Tensor last_ids = at::empty({C, height, width}, f.dtype(at::kInt)), final_T = at::empty({C, height, width, 1}, f);
  const std::vector<Splat> splats = gather_splats(means2d.data_ptr<float>(), conics.data_ptr<float>(),
                                                  opacities.data_ptr<float>(), C * N);
  FwdArgs a;
  a.splats = splats.data();
  a.colors = colors.data_ptr<float>();
  a.bg = backgrounds ? backgrounds->data_ptr<float>() : nullptr;
  a.offsets = isect_offsets.data_ptr<int>();
  a.ids = flatten_ids.data_ptr<int>();
  a.D = D; a.width = width; a.height = height;
  a.th = isect_offsets.size(1); a.tw = isect_offsets.size(2); a.M = flatten_ids.size(0);
  a.n_tiles = C * a.th * a.tw;
  a.ts = (int)tile_size; a.halves = (a.ts + LANES - 1) / LANES; a.stride = a.halves * LANES;
  a.out_colors = out_colors.data_ptr<float>(); a.out_alphas = out_alphas.data_ptr<float>();
  a.out_T = final_T.data_ptr<float>(); a.out_last = last_ids.data_ptr<int>();

  const int P = a.ts * a.stride;
  std::vector<TileState> states(num_workers(a.n_tiles));
  for (auto& st : states) {
    st.T.resize(P); st.act.resize(P); st.last.resize(P); st.acc.resize(D * P); st.half_active.resize(a.ts * a.halves);
  }
  const std::vector<int64_t> order = tiles_longest_first(a.offsets, a.M, a.n_tiles);
  auto run = [&](auto tile_fn) {
    parallel_dynamic(a.n_tiles, [&](int64_t i, int w) { tile_fn(a, order[i], states[w]); });
  };
  switch (D) {
    case 1: run(composite_tile<1>); break;
    case 3: run(composite_tile<3>); break;
    case 4: run(composite_tile<4>); break;
    default: run(composite_tile<0>);
  }
  return {out_colors, out_alphas, last_ids, final_T};
}

}  // namespace aa::cpu
