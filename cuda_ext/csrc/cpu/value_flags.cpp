// The input value rules (../value_rules.h) over CPU tensors: rows in parallel, one bitmask.
#include <atomic>

#include "../ops.h"
#include "../value_rules.h"
#include "common.h"

namespace aa::cpu {

at::Tensor value_flags(const std::vector<at::Tensor>& segments) {
  std::atomic<int> mask{0};
  for (int s = 0; s < kNumSegments; ++s) {
    const int width = segment_width(s);
    const float* data = segments[s].data_ptr<float>();
    at::parallel_for(0, segments[s].numel() / width, 16384, [&](int64_t b, int64_t e) {
      int bits = 0;
      for (int64_t r = b; r < e; ++r) bits |= row_rule_bits(s, data + r * width, width);
      if (bits) mask.fetch_or(bits);
    });
  }
  return at::full({1}, mask.load(), segments[0].options().dtype(at::kInt));
}

}  // namespace aa::cpu
