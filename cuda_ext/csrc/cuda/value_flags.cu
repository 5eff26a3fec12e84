// The input value rules (../value_rules.h) on the GPU: one launch covers every segment (blockIdx.y), a
// grid-stride loop over its rows, a warp OR, and one atomicOr per warp into the mask.
#include "value_rules.h"
#include "common.cuh"
#include "launchers.h"

namespace aa {
namespace {

__global__ void value_flags_kernel(ValueSegments segs, int32_t* __restrict__ mask) {
  const int s = blockIdx.y;
  const int width = segment_width(s);
  const int64_t rows = segs.numel[s] / width;
  int bits = 0;
  for (int64_t r = gpu::global_index(); r < rows; r += static_cast<int64_t>(gridDim.x) * blockDim.x)
    bits |= row_rule_bits(s, segs.data[s] + r * width, width);
  for (int offset = 16; offset > 0; offset >>= 1) bits |= __shfl_xor_sync(gpu::kFullMask, bits, offset);
  if (bits && (threadIdx.x & 31) == 0) atomicOr(mask, bits);
}

}  // namespace

void launch_value_flags(const ValueSegments& segs, int32_t* mask, cudaStream_t stream) {
  int64_t most = 0;
  for (int s = 0; s < kNumSegments; ++s) most = segs.numel[s] > most ? segs.numel[s] : most;
  if (most == 0) return;
  const int64_t blocks = gpu::ceil_div(most, gpu::kThreads);
  const dim3 grid(static_cast<unsigned>(blocks < 1024 ? blocks : 1024), kNumSegments);
  value_flags_kernel<<<grid, gpu::kThreads, 0, stream>>>(segs, mask);
}

}  // namespace aa
