// Inputs found by the fuzzers (fuzz/) that once escaped as something other than attn::Error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <limits>
#include <string>
#include <vector>

#include "attn/attention/attention.h"
#include "attn/core/error.h"
#include "attn/core/rng.h"
#include "attn/data/vocabulary.h"
#include "attn/io/npy.h"

namespace attn {
namespace {

// fuzz_vocabulary crash-2ad1c54b: a non-string "format" made nlohmann throw type_error.
TEST(FuzzRegression, VocabularyJsonWithWrongTypesThrowsAttnError) {
  for (const std::string text : {R"({"format":["8pad>", " "]})", R"({"format": 1})",
                                 R"({"format": "attn-vocabulary", "version": "1"})",
                                 R"({"format": "attn-vocabulary", "version": 1.5})"}) {
    SCOPED_TRACE(text);
    try {
      data::Vocabulary::from_json(text, "v.json");
      FAIL() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("v.json"), std::string::npos) << e.what();
    }
  }
}

Tensor random_tensor(const Shape& shape, Rng& rng) {
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(rng.normal());
  return t;
}

// fuzz_attend crash-803b4126 (fuzz/corpus/attend/crash-803b4126-huge-query-offset): with
// query_offset > 2^61 (allowed up to 2^62) the fused backward kernels saw no query row for
// any key block (kernels/cpu/key_block_rows.h started from INT64_MAX / 4) and returned zero
// gradients while the forward and the reference were right.
TEST(FuzzRegression, HugeQueryOffsetKeepsTheFusedBackwardRight) {
  const int64_t kMax = int64_t{1} << 62;
  for (ScoreFn fn : {ScoreFn::scaled_dot, ScoreFn::additive}) {
    for (int64_t offset : {kMax, kMax - 7, int64_t{4323455646015787599}, -kMax}) {
      for (bool window : {false, true}) {
        SCOPED_TRACE(std::string(fn == ScoreFn::additive ? "additive" : "scaled_dot") + " offset " +
                     std::to_string(offset) + (window ? " window" : ""));
        Rng rng(5, 0);
        const Tensor q = random_tensor({1, 2, 6, 4}, rng), k = random_tensor({1, 2, 5, 4}, rng),
                     v = random_tensor({1, 2, 5, 3}, rng), dout = random_tensor({1, 2, 6, 3}, rng);
        AttentionExtras x;
        if (fn == ScoreFn::additive) {
          x.wq = random_tensor({3, 4}, rng);
          x.wk = random_tensor({3, 4}, rng);
          x.va = random_tensor({3}, rng);
        }
        AttentionOptions o;
        o.score = fn;
        o.backend = AttentionBackend::fused;
        o.query_offset = offset;
        // Both sides unbounded (the fuzzer's case: left 5.06e18, right INT64_MAX): every key
        // visible, as without a window.
        if (window) o.window = Window{int64_t{5061675994119173964}, std::numeric_limits<int64_t>::max()};
        AttentionOptions ref = o;
        ref.backend = AttentionBackend::reference;
        const AttentionOutput fa = attention_forward(q, k, v, x, o), fr = attention_forward(q, k, v, x, ref);
        const AttentionGrads ga = attention_backward(q, k, v, x, o, fa, dout);
        const AttentionGrads gr = attention_backward(q, k, v, x, ref, fr, dout);
        auto expect_close = [](const char* name, const Tensor& a, const Tensor& b) {
          ASSERT_EQ(a.defined(), b.defined()) << name;
          if (!a.defined()) return;
          ASSERT_EQ(a.shape(), b.shape()) << name;
          const std::vector<float> av = a.to_vector(), bv = b.to_vector();
          double norm = 0;
          for (float y : bv) norm += std::fabs(y);
          EXPECT_GT(norm, 0.1) << name << ": the reference gradient is not trivially zero";
          for (size_t i = 0; i < av.size(); ++i) EXPECT_NEAR(av[i], bv[i], 1e-4 * (1 + std::fabs(bv[i]))) << name << "[" << i << "]";
        };
        expect_close("out", fa.out, fr.out);
        expect_close("dq", ga.dq, gr.dq);
        expect_close("dk", ga.dk, gr.dk);
        expect_close("dv", ga.dv, gr.dv);
        if (fn == ScoreFn::additive) {
          expect_close("dwq", ga.dwq, gr.dwq);
          expect_close("dwk", ga.dwk, gr.dwk);
          expect_close("dva", ga.dva, gr.dva);
        }
      }
    }
  }
}

// fuzz_attend crash-14700826 (fuzz/corpus/attend/crash-14700826-cosine-denormal-row): cosine
// scores of a query or key row of denormals (|x| < 1/FLT_MAX). The fused kernels scale by
// 1/|x| in f32, which overflowed to inf: every score -inf, out 0 and lse -inf where the
// reference (double) gives cos = ±1. Such inputs now stay on the reference.
TEST(FuzzRegression, CosineOfDenormalRowsMatchesTheReference) {
  for (DType dt : {DType::f32, DType::bf16}) {
    for (bool tiny_key : {false, true}) {
      SCOPED_TRACE(std::string(dt == DType::bf16 ? "bf16" : "f32") + (tiny_key ? " tiny key" : " tiny query"));
      std::vector<float> qv = {1e-40f, 2e-40f, 0.5f, -0.25f, 0.75f, 0.5f}, kv = {1.f, -0.5f, 0.25f, 1.f, 0.5f, 1.f};
      if (tiny_key) std::swap(qv, kv);
      const Tensor q = Tensor::from_vector(qv, {3, 2}).to(dt), k = Tensor::from_vector(kv, {3, 2}).to(dt),
                   v = Tensor::from_vector({0.3f, 0.2f, 0.4f}, {3, 1}).to(dt);
      AttentionOptions o;
      o.score = ScoreFn::cosine;
      o.causal = true;
      o.query_offset = 8;  // every key visible
      AttentionOptions ref = o;
      ref.backend = AttentionBackend::reference;
      const AttentionOutput a = attention_forward(q, k, v, {}, o), r = attention_forward(q, k, v, {}, ref);
      ASSERT_EQ(a.out.shape(), r.out.shape());
      ASSERT_EQ(a.lse.shape(), r.lse.shape());
      const std::vector<float> ao = a.out.to_vector(), ro = r.out.to_vector(), al = a.lse.to_vector(),
                               rl = r.lse.to_vector();
      for (size_t i = 0; i < ro.size(); ++i) {
        ASSERT_TRUE(std::isfinite(rl[i]));
        EXPECT_NEAR(ao[i], ro[i], 1e-5) << "out[" << i << "]";
        EXPECT_NEAR(al[i], rl[i], 1e-5) << "lse[" << i << "]";
      }
    }
  }
}

// fuzz_npy crash-8f46e74f (fuzz/corpus/npy/crash-8f46e74f-zero-dim-stride-overflow): a shape
// with a 0 among sizes whose product overflows int64, (22202, 7, 0, 7, 20707, ...), made
// contiguous_strides overflow (undefined behaviour, caught by UBSan in the CI's sanitizer
// build). The array has no elements: it parses as an empty tensor of that shape.
TEST(FuzzRegression, NpyZeroSizedShapeWithHugeOtherSizesIsEmpty) {
  std::ifstream f(std::string(ATTN_SOURCE_DIR) + "/fuzz/corpus/npy/crash-8f46e74f-zero-dim-stride-overflow",
                  std::ios::binary);
  ASSERT_TRUE(f) << "seed file missing";
  std::stringstream bytes;
  bytes << f.rdbuf();
  const std::string data = bytes.str();
  const Tensor t = io::parse_npy(data.data(), data.size(), "crash.npy");
  ASSERT_EQ(t.dim(), 17);
  EXPECT_EQ(t.size(0), 22202);
  EXPECT_EQ(t.size(2), 0);
  EXPECT_EQ(t.numel(), 0);
  // The same through Tensor::empty: sizes after the 0 whose product overflows (sizes before
  // it that overflow are refused as too large to allocate).
  const int64_t big = int64_t{1} << 40;
  const Tensor e = Tensor::empty({3, 0, big, big, big});
  EXPECT_EQ(e.numel(), 0);
  EXPECT_EQ(e.shape(), (Shape{3, 0, big, big, big}));
}

// fuzz_attend crash-eb80e7f5 (fuzz/corpus/attend/crash-eb80e7f5-general-single-row-stride): a
// one-row q whose row stride is 1 (a view of a transposed copy) with the general score. The
// fused path passed that stride to SGEMM as lda (< D: "parameter number 10 had an illegal
// value"), OpenBLAS skipped the product, and the scores came out 0.
TEST(FuzzRegression, GeneralScoreWithOneQueryRowOfAnyStride) {
  Rng rng(9, 0);
  const Tensor q_dense = random_tensor({1, 4}, rng);
  const Tensor q = q_dense.transpose(0, 1).clone().transpose(0, 1);  // [1, 4], strides [1, 1]
  ASSERT_EQ(q.shape(), (Shape{1, 4}));
  const Tensor k = random_tensor({3, 4}, rng), v = random_tensor({3, 5}, rng);
  AttentionExtras x;
  x.w = random_tensor({4, 4}, rng);
  AttentionOptions o;
  o.score = ScoreFn::general;
  o.need_weights = true;
  AttentionOptions ref = o;
  ref.backend = AttentionBackend::reference;
  for (const Tensor& qi : {q, q_dense}) {
    const AttentionOutput a = attention_forward(qi, k, v, x, o), r = attention_forward(qi, k, v, x, ref);
    ASSERT_EQ(a.lse.shape(), r.lse.shape());
    ASSERT_EQ(a.weights.shape(), r.weights.shape());
    EXPECT_NEAR(a.lse.to_vector()[0], r.lse.to_vector()[0], 1e-5);
    const std::vector<float> aw = a.weights.to_vector(), rw = r.weights.to_vector();
    for (size_t j = 0; j < rw.size(); ++j) EXPECT_NEAR(aw[j], rw[j], 1e-5) << "weight " << j;
  }
}

}  // namespace
}  // namespace attn
