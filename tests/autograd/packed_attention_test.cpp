// packed_attention: heads read in place from packed projections. Gradient check of the
// definition in f64, and the fused f32 path against the same computation composed of
// slice / reshape / transpose / attention (values and gradients).
#include <gtest/gtest.h>

#include <limits>

#include "attn/autograd/packed_attention.h"
#include "test_util.h"

namespace attn::ag {
namespace {

using testing::expect_close;
using testing::expect_gradcheck;

// The definition from primitive ops (what MultiheadAttention did before).
Var split_heads(const PackedHeads& p) {
  const int64_t B = p.src.size(0), N = p.src.size(1);
  return transpose(reshape(slice(p.src, 2, p.col, p.col + p.heads * p.dim), {B, N, p.heads, p.dim}), 1, 2);
}
AttentionResult composed(const PackedHeads& q, const PackedHeads& k, const PackedHeads& v, const AttentionInputs& in,
                         const AttentionOptions& o) {
  AttentionResult r = attention(split_heads(q), split_heads(k), split_heads(v), in, o);
  r.out = reshape(transpose(r.out, 1, 2), {q.src.size(0), q.src.size(1), q.heads * v.dim});
  return r;
}

TEST(PackedAttention, GradcheckF64SelfAndCross) {
  Rng rng(41);
  const int64_t B = 2, N = 3, Nk = 4, H = 2, Hkv = 1, D = 2;
  // Self-attention: q, k, v in one [B, N, (H + 2 Hkv) D] tensor, GQA, causal, lengths, bias.
  Var qkv = testing::leaf({B, N, (H + 2 * Hkv) * D}, rng);
  Var bias = testing::leaf({B, 1, N, N}, rng);
  AttentionInputs in;
  in.bias = bias;
  in.key_lengths = Tensor::from_vector_i32({3, 2}, {B});
  AttentionOptions o;
  o.causal = true;
  auto self = [&] {
    return packed_attention({qkv, 0, H, D}, {qkv, H * D, Hkv, D}, {qkv, (H + Hkv) * D, Hkv, D}, in, o).out;
  };
  ASSERT_EQ(self().shape(), (Shape{B, N, H * D}));
  expect_gradcheck(self, {qkv, bias});
  // Cross-attention: q from one src, k and v from another with spare columns.
  Var q = testing::leaf({B, N, H * D}, rng), kv = testing::leaf({B, Nk, 3 * D}, rng);
  auto cross = [&] { return packed_attention({q, 0, H, D}, {kv, 2 * D, 1, D}, {kv, 0, 1, D}, {}, {}).out; };
  ASSERT_EQ(cross().shape(), (Shape{B, N, H * D}));
  expect_gradcheck(cross, {q, kv});
}

struct F32Case {
  const char* name;
  bool shared_src;    // q, k, v in one tensor (self-attention) or q apart from k, v
  bool spare_cols;    // the k/v tensor has columns no head reads (zero gradient there)
  bool extra_use;     // the src also feeds another op (its grad buffer already exists)
  bool causal_drop;   // causal mask + attention dropout
};

TEST(PackedAttention, FusedF32EqualsComposed) {
  const F32Case cases[] = {{"self", true, false, false, false},
                           {"self_extra_use_causal_dropout", true, false, true, true},
                           {"cross_spare_cols", false, true, false, false},
                           {"cross_extra_use", false, true, true, true}};
  for (const F32Case& c : cases) {
    SCOPED_TRACE(c.name);
    const int64_t B = 2, N = 5, Nk = c.shared_src ? 5 : 7, H = 4, Hkv = 2, D = 8;
    const int64_t Wq = c.shared_src ? (H + 2 * Hkv) * D : H * D;
    const int64_t Wkv = c.shared_src ? Wq : 2 * Hkv * D + (c.spare_cols ? 3 * D : 0);
    Rng rng(43);
    Tensor qt = random_tensor({B, N, Wq}, rng, -1, 1, DType::f32);
    Tensor kvt = random_tensor({B, Nk, Wkv}, rng, -1, 1, DType::f32);
    Tensor seed = random_tensor({B, N, H * D}, rng, -1, 1, DType::f32);
    AttentionInputs in;
    in.key_lengths = Tensor::from_vector_i32({static_cast<int32_t>(Nk), 3}, {B});
    AttentionOptions o;
    o.causal = c.causal_drop;
    o.dropout = c.causal_drop ? 0.25 : 0.0;
    o.seed = 7;
    o.need_weights = true;

    auto run = [&](bool fused, Var* src_q, Var* src_kv) {
      *src_q = Var(qt.clone(), true);
      *src_kv = c.shared_src ? *src_q : Var(kvt.clone(), true);
      // Non-leaf srcs (as a linear output would be), so the extra use shares their grad buffer.
      Var sq = *src_q * 1.0, skv = c.shared_src ? sq : *src_kv * 1.0;
      const int64_t kc = c.shared_src ? H * D : (c.spare_cols ? 3 * D : 0);
      PackedHeads ph{sq, 0, H, D}, pk{skv, kc, Hkv, D}, pv{skv, kc + Hkv * D, Hkv, D};
      AttentionResult r = fused ? packed_attention(ph, pk, pv, in, o) : composed(ph, pk, pv, in, o);
      Var y = r.out;
      if (c.extra_use) y = y + slice(sq, 2, 0, H * D) * 0.5;
      y.backward(seed);
      return std::make_pair(y.value(), r.weights);
    };
    Var fq, fkv, cq, ckv;
    auto [fy, fw] = run(true, &fq, &fkv);
    auto [cy, cw] = run(false, &cq, &ckv);
    ASSERT_EQ(fy.shape(), (Shape{B, N, H * D}));
    expect_close(fy, cy, 1e-6, 1e-6, "out");
    expect_close(fw, cw, 1e-6, 1e-6, "weights");
    expect_close(fq.grad(), cq.grad(), 1e-6, 1e-6, "d src_q");
    if (!c.shared_src) expect_close(fkv.grad(), ckv.grad(), 1e-6, 1e-6, "d src_kv");
    if (c.spare_cols) {  // columns no head reads get exactly zero
      Tensor g = fkv.grad().slice(2, 0, 3 * D).contiguous();
      for (int64_t i = 0; i < g.numel(); ++i) ASSERT_EQ(g.data<float>()[i], 0.f) << "element " << i;
    }
  }
}

TEST(PackedAttention, RejectsHeadsThatDoNotFit) {
  Var x(Tensor::zeros({1, 3, 8}), true);
  auto msg = [&](const PackedHeads& q) {
    try {
      packed_attention(q, {x, 0, 1, 4}, {x, 4, 1, 4}, {}, {});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg({x, 4, 2, 4}).find("do not fit src [1, 3, 8]"), std::string::npos) << msg({x, 4, 2, 4});
  EXPECT_NE(msg({x, 2, 1, 4}).find("multiples of the head dim 4"), std::string::npos) << msg({x, 2, 1, 4});
  Var flat(Tensor::zeros({3, 8}), true);
  EXPECT_NE(msg({flat, 0, 1, 4}).find("q.src must be [B, N, W]"), std::string::npos) << msg({flat, 0, 1, 4});
}

}  // namespace
}  // namespace attn::ag
