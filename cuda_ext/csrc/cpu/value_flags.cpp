// The input value rules (../value_rules.h) over CPU tensors: one bitmask. The per-Gaussian segments (means,
// quats, scales, opacities, colours) are read as flat runs of floats in loops the compiler vectorises (the
// rule bits are ORed, no branch per value); the per-camera ones, a few rows, go through row_rule_bits.
#include <atomic>

#include "../ops.h"
#include "../value_rules.h"
#include "common.h"

namespace aa::cpu {
namespace {

// Failed-rule bits of values [b, e) of one flat segment (rows of `width` for the zero-quaternion rule).
int flat_rule_bits(int s, const float* data, int64_t b, int64_t e, int width) {
  uint32_t nonfinite = 0, not_positive = 0, out_of_unit = 0;
  for (int64_t i = b; i < e; ++i) {
    uint32_t u;
    std::memcpy(&u, data + i, 4);
    nonfinite |= (u & 0x7f800000u) == 0x7f800000u;
    not_positive |= data[i] <= 0.0f;
    out_of_unit |= (data[i] < 0.0f) | (data[i] > 1.0f);
  }
  int bits = nonfinite ? 1 << s : 0;
  if (s == kScales && not_positive) bits |= 1 << kScalesNotPositive;
  if (s == kOpacities && out_of_unit) bits |= 1 << kOpacityOutOfRange;
  if (s == kQuats) {
    uint32_t zero = 0;
    for (int64_t r = b / width; r < e / width; ++r) {
      const float* q = data + r * width;
      zero |= (q[0] == 0.0f) & (q[1] == 0.0f) & (q[2] == 0.0f) & (q[3] == 0.0f);
    }
    if (zero) bits |= 1 << kZeroQuaternion;
  }
  return bits;
}

}  // namespace

at::Tensor value_flags(const std::vector<at::Tensor>& segments) {
  std::atomic<int> mask{0};
  for (int s = 0; s < kNumSegments; ++s) {
    const int width = segment_width(s);
    const float* data = segments[s].data_ptr<float>();
    const int64_t rows = segments[s].numel() / width;
    if (s == kViewmats || s == kKs) {                              // a few rows per camera
      int bits = 0;
      for (int64_t r = 0; r < rows; ++r) bits |= row_rule_bits(s, data + r * width, width);
      mask.fetch_or(bits);
      continue;
    }
    at::parallel_for(0, rows, 16384, [&](int64_t b, int64_t e) {   // whole rows per chunk
      if (const int bits = flat_rule_bits(s, data, b * width, e * width, width)) mask.fetch_or(bits);
    });
  }
  return at::full({1}, mask.load(), segments[0].options().dtype(at::kInt));
}

}  // namespace aa::cpu
