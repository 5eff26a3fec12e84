// The value rules of rasterization()'s inputs, shared by the CPU loop (cpu/value_flags.cpp) and the CUDA
// kernel (cuda/value_flags.cu); the pure-torch twin is reference.value_flags. One pass over every input
// gives a bitmask of the rules that fail, read back with one host sync; cuda_ext/_checks.py then names
// the first failure. Segments: the tensors checked, each seen as rows of a fixed width.
#pragma once
#include <cstdint>
#include <cstring>

#include "math.h"

namespace aa {

enum ValueSegment { kMeans = 0, kQuats, kScales, kOpacities, kViewmats, kKs, kColors, kNumSegments };

// Bit b of the mask: rule b fails. Bits 0..6: a NaN/inf in segment b. Then the range rules.
enum ValueRuleBit {
  kScalesNotPositive = kNumSegments,  // some scale <= 0
  kZeroQuaternion,                    // some quaternion is (0, 0, 0, 0)
  kOpacityOutOfRange,                 // some opacity outside [0, 1]
  kFocalNotPositive,                  // some K has fx <= 0 or fy <= 0
};

// Row width of each segment: means [N,3], quats [N,4], scales [N,3], opacities [N], viewmats [C,16],
// Ks [C,9], colors [*] (any shape, one value a row).
AA_HD int segment_width(int segment) {
  switch (segment) {
    case kMeans: case kScales: return 3;
    case kQuats: return 4;
    case kViewmats: return 16;
    case kKs: return 9;
    default: return 1;
  }
}

// NaN and inf have every exponent bit set; read from the bits so no fast-math flag can fold the test away.
AA_HD bool finite_bits(float v) {
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  return (u & 0x7f800000u) != 0x7f800000u;
}

// Failed-rule bits of one row of `segment`.
AA_HD int row_rule_bits(int segment, const float* row, int width) {
  int bits = 0;
  bool zero = true;
  for (int i = 0; i < width; ++i) {
    const float v = row[i];
    if (!finite_bits(v)) bits |= 1 << segment;
    zero = zero && v == 0.0f;
    if (segment == kScales && v <= 0.0f) bits |= 1 << kScalesNotPositive;
    if (segment == kOpacities && (v < 0.0f || v > 1.0f)) bits |= 1 << kOpacityOutOfRange;
  }
  if (segment == kQuats && zero) bits |= 1 << kZeroQuaternion;
  if (segment == kKs && (row[0] <= 0.0f || row[4] <= 0.0f)) bits |= 1 << kFocalNotPositive;
  return bits;
}

}  // namespace aa
