// 4 x 4 float transposes in 128-bit registers, shared by the flash forward's Q pack and the
// backward's Kᵀ / Vᵀ packs. Per Highway target (included once per target by
// foreach_target.h, hence the toggle guard instead of #pragma once). The scalar target has no
// 4-lane vectors: callers keep an element-by-element path for it.
#if defined(ATTN_KERNELS_CPU_TRANSPOSE4_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_KERNELS_CPU_TRANSPOSE4_INL_H_
#undef ATTN_KERNELS_CPU_TRANSPOSE4_INL_H_
#else
#define ATTN_KERNELS_CPU_TRANSPOSE4_INL_H_
#endif

#include <cstdint>

#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace attn::cpu::HWY_NAMESPACE::simd4 {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET != HWY_SCALAR
using D4 = hn::FixedTag<float, 4>;
using V4 = hn::Vec<D4>;

// Stores the 4 x 4 block whose rows are r0..r3 transposed: dst[i * ld + u] = r_u[i].
HWY_INLINE void StoreTransposed(V4 r0, V4 r1, V4 r2, V4 r3, float* HWY_RESTRICT dst, int64_t ld) {
  const D4 d4;
  const auto lo01 = hn::InterleaveLower(d4, r0, r1), lo23 = hn::InterleaveLower(d4, r2, r3);
  const auto hi01 = hn::InterleaveUpper(d4, r0, r1), hi23 = hn::InterleaveUpper(d4, r2, r3);
  hn::StoreU(hn::ConcatLowerLower(d4, lo23, lo01), d4, dst);
  hn::StoreU(hn::ConcatUpperUpper(d4, lo23, lo01), d4, dst + ld);
  hn::StoreU(hn::ConcatLowerLower(d4, hi23, hi01), d4, dst + 2 * ld);
  hn::StoreU(hn::ConcatUpperUpper(d4, hi23, hi01), d4, dst + 3 * ld);
}
#endif

}  // namespace attn::cpu::HWY_NAMESPACE::simd4
HWY_AFTER_NAMESPACE();

#endif  // ATTN_KERNELS_CPU_TRANSPOSE4_INL_H_
