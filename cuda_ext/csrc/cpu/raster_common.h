// What the CPU compositor's forward and backward share: the per-splat record, the tile walk, and the
// conservative window of pixel rows and 8-pixel half-rows a splat can reach with alpha >= 1/255.
#pragma once
#include "../math.h"
#include "vec8.h"

#include <vector>

namespace aa::cpu {

constexpr int LANES = 8;

// One splat as the compositor reads it (gathered once so a tile touches one cache line per splat).
struct Splat {
  float mx, my, ca, cb, cc, op;  // mean, conic (upper triangle), opacity
};

inline std::vector<Splat> gather_splats(const float* means2d, const float* conics, const float* opac, int64_t n) {
  std::vector<Splat> s(n);
  at::parallel_for(0, n, 8192, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      s[i] = {means2d[2 * i], means2d[2 * i + 1], conics[3 * i], conics[3 * i + 1], conics[3 * i + 2], opac[i]};
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

// Rows [r0, r1] and half-rows [h0, h1] (tile-relative) outside which the splat's alpha is surely < 1/255.
// Returns false when it reaches no pixel of the tile at all.
struct Window { int r0, r1, h0, h1; };

inline bool splat_window(const Splat& s, const Tile& t, int ts, Window& win) {
  int64_t xl = t.x0, xh = t.x0 + ts - 1, yl = t.y0, yh = t.y0 + ts - 1;
  const float det = s.ca * s.cc - s.cb * s.cb;
  if (s.ca > 0.f && s.cc > 0.f && det > 0.f) {
    // alpha >= 1/255  <=>  power <= ln(255 * opacity); the ellipse's extent along x and y, padded.
    const float lim = 2.f * (std::log(255.f * s.op) + 1e-3f);
    const float ex = std::sqrt(lim * s.cc / det) + 1e-3f, ey = std::sqrt(lim * s.ca / det) + 1e-3f;
    xl = std::max<int64_t>(xl, (int64_t)std::floor(s.mx - ex - 0.5f));
    xh = std::min<int64_t>(xh, (int64_t)std::ceil(s.mx + ex - 0.5f));
    yl = std::max<int64_t>(yl, (int64_t)std::floor(s.my - ey - 0.5f));
    yh = std::min<int64_t>(yh, (int64_t)std::ceil(s.my + ey - 0.5f));
  }
  yh = std::min<int64_t>(yh, t.y0 + t.h - 1);
  xh = std::min<int64_t>(xh, t.x0 + t.w - 1);
  if (xl > xh || yl > yh) return false;
  win = {(int)(yl - t.y0), (int)(yh - t.y0), (int)((xl - t.x0) / LANES), (int)((xh - t.x0) / LANES)};
  return true;
}

// power = 0.5 (a dx^2 + c dy^2) + b dx dy and alpha = min(0.99, op * exp(-power)) for 8 pixels of a row;
// `ok` marks the lanes where the splat counts (power >= 0, alpha >= 1/255).
struct Eval { F8 dx, dy, power, vis, alpha; M8 ok; };

inline Eval eval_splat(const Splat& s, F8 px, float py) {
  Eval e;
  e.dx = F8::set1(s.mx) - px;
  e.dy = F8::set1(s.my - py);
  const F8 half = F8::set1(0.5f);
  e.power = fma(half * F8::set1(s.ca) * e.dx, e.dx, half * F8::set1(s.cc) * e.dy * e.dy) +
            F8::set1(s.cb) * e.dx * e.dy;
  e.vis = exp_neg(e.power);
  e.alpha = min(F8::set1(s.op) * e.vis, F8::set1(ALPHA_MAX));
  e.ok = (e.power >= F8::set1(0.f)) & (e.alpha >= F8::set1(ALPHA_MIN));
  return e;
}

}  // namespace aa::cpu
