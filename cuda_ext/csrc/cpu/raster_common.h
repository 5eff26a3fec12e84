// What the CPU compositor's forward and backward share: the per-splat record, the tile walk, and the
// conservative window of pixel rows and 8-pixel half-rows a splat can reach with alpha >= 1/255.
#pragma once
#include "../math.h"
#include "vec8.h"

#include <algorithm>
#include <memory>
#include <new>
#include <vector>

namespace aa::cpu {

// A float buffer aligned to 64 bytes, so 8-float vector loads of pixel runs never straddle a cache line.
class AlignedBuf {
 public:
  void resize(size_t n) { data_.reset(static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t(64)))); }
  float* data() { return data_.get(); }
  float& operator[](size_t i) { return data_.get()[i]; }

 private:
  struct Free { void operator()(float* p) const { ::operator delete[](p, std::align_val_t(64)); } };
  std::unique_ptr<float, Free> data_;
};

// One splat as the compositor reads it (gathered once, 44 bytes, so a tile touches at most two cache lines per splat).
// [x0, x1] x [y0, y1]: the pixels where alpha can reach 1/255, power <= lim there (empty when x0 > x1;
// unbounded for a conic that is not positive definite). Padded so the window never decides the cut-off.
struct Splat {
  float mx, my, ca, cb, cc, op, lim;
  int32_t x0, x1, y0, y1;
};

inline Splat make_splat(float mx, float my, float ca, float cb, float cc, float op) {
  constexpr int32_t FAR = 1 << 30;
  Splat s{mx, my, ca, cb, cc, op, INFINITY, -FAR, FAR, -FAR, FAR};
  const float det = ca * cc - cb * cb;
  if (!(op >= ALPHA_MIN)) {
    s.x0 = 1; s.x1 = 0;  // opacity below 1/255: alpha can never reach it
  } else if (ca > 0.f && cc > 0.f && det > 0.f) {
    // alpha >= 1/255  <=>  power <= ln(255 * opacity); the ellipse's extent along x and y, padded.
    s.lim = std::log(255.f * op) + 1e-3f;
    const float ex = std::sqrt(2.f * s.lim * cc / det) + 1e-3f, ey = std::sqrt(2.f * s.lim * ca / det) + 1e-3f;
    auto to_int = [](float v) { return (int32_t)std::min(std::max(v, -1e9f), 1e9f); };
    s.x0 = to_int(std::floor(mx - ex - 0.5f)); s.x1 = to_int(std::ceil(mx + ex - 0.5f));
    s.y0 = to_int(std::floor(my - ey - 0.5f)); s.y1 = to_int(std::ceil(my + ey - 0.5f));
  }
  return s;
}

inline std::vector<Splat> gather_splats(const float* means2d, const float* conics, const float* opac, int64_t n) {
  std::vector<Splat> s(n);
  at::parallel_for(0, n, 8192, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      s[i] = make_splat(means2d[2 * i], means2d[2 * i + 1], conics[3 * i], conics[3 * i + 1], conics[3 * i + 2], opac[i]);
  });
  return s;
}

// The tile at flat index f (camera-major) and its pixel box.
struct Tile {
  int64_t cam, x0, y0;  // camera, top-left pixel
  int w, h;             // pixels of the tile inside the image
  int64_t begin, end;   // its range in flatten_ids
};

inline Tile tile_at(int64_t f, int64_t tw, int64_t th, int ts, int64_t width, int64_t height, const int* offsets,
                    int64_t n_isects, int64_t n_tiles_total) {
  Tile t;
  t.cam = f / (tw * th);
  const int64_t k = f % (tw * th);
  t.x0 = (k % tw) * ts;
  t.y0 = (k / tw) * ts;
  t.w = (int)std::min<int64_t>(ts, width - t.x0);
  t.h = (int)std::min<int64_t>(ts, height - t.y0);
  t.begin = offsets[f];
  t.end = f + 1 < n_tiles_total ? offsets[f + 1] : n_isects;
  return t;
}

// Tiles ordered longest list first: handed out dynamically in this order, a long tile never starts last and
// keeps one core busy while the other idles (longest-processing-time-first scheduling).
inline std::vector<int64_t> tiles_longest_first(const int* offsets, int64_t n_isects, int64_t n_tiles) {
  std::vector<int64_t> order(n_tiles);
  for (int64_t f = 0; f < n_tiles; ++f) order[f] = f;
  auto len = [&](int64_t f) { return (f + 1 < n_tiles ? offsets[f + 1] : n_isects) - offsets[f]; };
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return len(a) > len(b); });
  return order;
}

// Rows [r0, r1] and half-rows [h0, h1] (tile-relative) outside which the splat's alpha is surely < 1/255.
// Returns false when it reaches no pixel of the tile at all.
struct Window { int r0, r1, h0, h1; };

inline bool splat_window(const Splat& s, const Tile& t, Window& win) {
  const int64_t xl = std::max<int64_t>(t.x0, s.x0), xh = std::min<int64_t>(t.x0 + t.w - 1, s.x1);
  const int64_t yl = std::max<int64_t>(t.y0, s.y0), yh = std::min<int64_t>(t.y0 + t.h - 1, s.y1);
  if (xl > xh || yl > yh) return false;
  win = {(int)(yl - t.y0), (int)(yh - t.y0), (int)((xl - t.x0) / LANES), (int)((xh - t.x0) / LANES)};
  return true;
}

// The splat along one pixel row: power(dx) = (A dx + B) dx + Cr with dx = mx - px, A = a/2, B = b dy,
// Cr = c dy^2 / 2 (the same quadratic form as the reference, regrouped per row).
struct RowForm { F8 A, B, Cr, dy; };

inline RowForm row_form(const Splat& s, float py) {
  const float dy = s.my - py;
  return {F8::set1(0.5f * s.ca), F8::set1(s.cb * dy), F8::set1(0.5f * s.cc * dy * dy), F8::set1(dy)};
}

// For 8 pixels of a row: dx, power, and `near`, the lanes where the splat can reach alpha 1/255 at all
// (power in [0, lim]); the exp is only worth computing when some lane is near.
struct Eval { F8 dx, dy, power, vis, alpha; M8 ok; };

inline M8 eval_power(const Splat& s, const RowForm& rf, F8 px, Eval& e) {
  e.dx = F8::set1(s.mx) - px;
  e.dy = rf.dy;
  e.power = fma(fma(rf.A, e.dx, rf.B), e.dx, rf.Cr);
  return (e.power >= F8::set1(0.f)) & (F8::set1(s.lim) >= e.power);
}

// alpha = min(0.99, op * exp(-power)); ok: lanes with power >= 0 and alpha >= 1/255.
inline void eval_alpha(const Splat& s, Eval& e) {
  e.vis = exp_neg(e.power);
  e.alpha = min(F8::set1(s.op) * e.vis, F8::set1(ALPHA_MAX));
  e.ok = (e.power >= F8::set1(0.f)) & (e.alpha >= F8::set1(ALPHA_MIN));
}

}  // namespace aa::cpu
