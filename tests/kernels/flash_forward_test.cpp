// The fused CPU attention forward against the double-precision reference (kernels/ref), for every
// mask, odd sizes, grouped-query heads, strided inputs, 1 and 2 threads and each SIMD target
// compiled in and supported by this CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "attn/core/dtype.h"
#include "attn/core/rng.h"
#include "attn/core/threading.h"
#include "attn/kernels/attention_problem.h"
#include "attn/kernels/cpu/flash_attention.h"
#include "attn/kernels/ref/attention_ref.h"

namespace attn {
namespace {

using cpu::FlashScore;
using kernels::AttentionProblem;
constexpr double kInf = std::numeric_limits<double>::infinity();

// q, k, v storage of one case. Strided cases store [B, N, H, D + pad] (PyTorch's
// transpose(1, 2) of a [B, N, H, D] tensor) so head and row strides are not the dense ones.
struct Case {
  std::string name;
  int64_t B = 1, Hq = 1, Hkv = 1, Nq = 1, Nk = 1, D = 4, Dv = 4;
  bool causal = false;
  int64_t query_offset = 0;
  bool window = false;
  int64_t wl = 0, wr = 0;
  std::vector<int32_t> key_lengths;
  enum class Bias { none, full, broadcast, strided } bias = Bias::none;
  bool bias_neg_inf = false;  // some bias entries -inf
  double dropout = 0;
  bool strided = false;
  FlashScore score = FlashScore::dot;
  double scale = 0;  // 0: 1/sqrt(D)
  bool zero_rows = false;  // a few all-zero q and k rows (cosine)
};

struct Data {
  AttentionProblem p;
  std::vector<float> q, k, v, bias;
  std::vector<int32_t> key_lengths;
  int64_t out_size = 0;
};

void set_strides(int64_t* s, int64_t B, int64_t H, int64_t N, int64_t D, bool strided,
                 int64_t* size) {
  const int64_t ld = strided ? D + 3 : D;
  if (strided) {  // [B, N, H, ld]
    s[0] = N * H * ld;
    s[1] = ld;
    s[2] = H * ld;
  } else {
    s[0] = H * N * D;
    s[1] = N * D;
    s[2] = D;
  }
  *size = B * N * H * ld;
}

Data make_data(const Case& c, uint64_t seed) {
  Data d;
  AttentionProblem& p = d.p;
  p.B = c.B;
  p.Hq = c.Hq;
  p.Hkv = c.Hkv;
  p.Nq = c.Nq;
  p.Nk = c.Nk;
  p.D = p.Dk = c.D;
  p.Dv = c.Dv;
  int64_t nq, nk, nv, no;
  set_strides(p.q_stride, c.B, c.Hq, c.Nq, c.D, c.strided, &nq);
  set_strides(p.k_stride, c.B, c.Hkv, c.Nk, c.D, c.strided, &nk);
  set_strides(p.v_stride, c.B, c.Hkv, c.Nk, c.Dv, c.strided, &nv);
  set_strides(p.o_stride, c.B, c.Hq, c.Nq, c.Dv, c.strided, &no);
  d.out_size = no;
  p.scale = c.scale != 0 ? c.scale : 1.0 / std::sqrt(static_cast<double>(c.D));
  if (c.score == FlashScore::cosine) p.scale = 1.0 / 0.3;  // temperature 0.3
  p.causal = c.causal;
  p.query_offset = c.query_offset;
  p.has_window = c.window;
  p.window_left = c.wl;
  p.window_right = c.wr;
  p.dropout = c.dropout;
  p.seed = seed * 7 + 1;
  Rng rng(seed);
  auto fill = [&](std::vector<float>& x, int64_t n) {
    x.resize(static_cast<size_t>(n));
    for (auto& e : x) e = static_cast<float>(rng.normal());
  };
  fill(d.q, nq);
  fill(d.k, nk);
  fill(d.v, nv);
  if (c.zero_rows) {
    for (int64_t e = 0; e < c.D; ++e) {
      d.q[static_cast<size_t>(p.q_stride[2] * (c.Nq / 2) + e)] = 0.f;
      d.k[static_cast<size_t>(p.k_stride[2] * (c.Nk / 3) + e)] = 0.f;
    }
  }
  if (!c.key_lengths.empty()) {
    d.key_lengths = c.key_lengths;
    p.key_lengths = d.key_lengths.data();
  }
  if (c.bias != Case::Bias::none) {
    const int64_t Nq = c.Nq, Nk = c.Nk;
    int64_t n = 0;
    switch (c.bias) {
      case Case::Bias::full:
        p.bias_stride[0] = c.Hq * Nq * Nk, p.bias_stride[1] = Nq * Nk, p.bias_stride[2] = Nk,
        p.bias_stride[3] = 1;
        n = c.B * c.Hq * Nq * Nk;
        break;
      case Case::Bias::broadcast:  // [1, 1, Nq, Nk]
        p.bias_stride[0] = 0, p.bias_stride[1] = 0, p.bias_stride[2] = Nk, p.bias_stride[3] = 1;
        n = Nq * Nk;
        break;
      case Case::Bias::strided:  // [B, 1, Nk, Nq] transposed view
        p.bias_stride[0] = Nq * Nk, p.bias_stride[1] = 0, p.bias_stride[2] = 1,
        p.bias_stride[3] = Nq;
        n = c.B * Nq * Nk;
        break;
      case Case::Bias::none: break;
    }
    fill(d.bias, n);
    if (c.bias_neg_inf)
      for (size_t e = 0; e < d.bias.size(); e += 5) d.bias[e] = -std::numeric_limits<float>::infinity();
    p.bias = d.bias.data();
  }
  return d;
}

// The oracle: the double-precision reference (kernels/ref) run on the same inputs widened to
// double. out [B, Hq, Nq, Dv] dense, lse [B, Hq, Nq], weights [B, Hq, Nq, Nk] (after dropout).
struct Oracle {
  std::vector<double> out, lse, weights;
};

Oracle ref_forward(const AttentionProblem& p, const Data& d, FlashScore score,
                   const std::vector<float>* w_general = nullptr) {
  auto widen = [](const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); };
  const std::vector<double> q = widen(d.q), k = widen(d.k), v = widen(d.v);
  std::vector<double> w;
  ref::ScoreParams64 s;
  s.fn = score == FlashScore::cosine ? ScoreFn::cosine : ScoreFn::scaled_dot;
  if (score == FlashScore::cosine) s.temperature = 1.0 / p.scale;
  if (w_general) {
    w = widen(*w_general);
    s.fn = ScoreFn::general;
    s.w = w.data();
  }
  std::vector<double> out(static_cast<size_t>(d.out_size), 0.0);
  Oracle o;
  o.lse.assign(static_cast<size_t>(p.B * p.Hq * p.Nq), 0.0);
  o.weights.assign(static_cast<size_t>(p.B * p.Hq * p.Nq * p.Nk), 0.0);
  ref::attention_forward(p, s, q.data(), k.data(), v.data(), out.data(), o.lse.data(), o.weights.data());
  o.out.resize(static_cast<size_t>(p.B * p.Hq * p.Nq * p.Dv));
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.Hq; ++h)
      for (int64_t i = 0; i < p.Nq; ++i)
        for (int64_t e = 0; e < p.Dv; ++e)
          o.out[static_cast<size_t>(((b * p.Hq + h) * p.Nq + i) * p.Dv + e)] =
              out[static_cast<size_t>(b * p.o_stride[0] + h * p.o_stride[1] + i * p.o_stride[2] + e)];
  return o;
}

// Compares a strided kernel output with the dense oracle: normwise relative error
// max|a - b| / max|b| <= tol, and lse to tol relative (-inf exactly).
void expect_close(const AttentionProblem& p, const std::vector<float>& out,
                  const std::vector<float>& lse, const Oracle& ref, double tol,
                  const std::string& what) {
  ASSERT_EQ(lse.size(), ref.lse.size()) << what;
  ASSERT_EQ(out.size() > 0, ref.out.size() > 0) << what;
  double max_ref = 0, max_err = 0;
  for (double x : ref.out) max_ref = std::max(max_ref, std::abs(x));
  int reported = 0;
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.Hq; ++h)
      for (int64_t i = 0; i < p.Nq; ++i) {
        const size_t row = static_cast<size_t>((b * p.Hq + h) * p.Nq + i);
        const float* o = out.data() + b * p.o_stride[0] + h * p.o_stride[1] + i * p.o_stride[2];
        for (int64_t e = 0; e < p.Dv; ++e) {
          const double err = std::abs(double(o[e]) - ref.out[row * p.Dv + e]);
          if (!(err <= tol * std::max(max_ref, 1e-30)) && reported++ < 5)
            ADD_FAILURE() << what << " out[" << b << "," << h << "," << i << "," << e << "] = " << o[e]
                          << " expected " << ref.out[row * p.Dv + e];
          max_err = std::max(max_err, err);
        }
        const double l = lse[row], lr = ref.lse[row];
        if (lr == -kInf) {
          if (l != -kInf && reported++ < 5) ADD_FAILURE() << what << " lse[" << row << "] = " << l << ", expected -inf";
        } else if (!(std::abs(l - lr) <= tol * std::max(1.0, std::abs(lr))) && reported++ < 5) {
          ADD_FAILURE() << what << " lse[" << row << "] = " << l << " expected " << lr;
        }
      }
  EXPECT_LE(max_err, tol * std::max(max_ref, 1e-30)) << what;
}

// Runs the kernel on every SIMD target and at 1 and 2 threads, comparing each with the oracle.
void check_case(const Case& c, uint64_t seed = 1) {
  SCOPED_TRACE(c.name);
  const Data d = make_data(c, seed);
  const Oracle ref = ref_forward(d.p, d, c.score);
  const auto targets = cpu::flash_supported_targets();
  ASSERT_FALSE(targets.empty());
  for (int64_t target : targets) {
    cpu::flash_force_target(target);
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      std::vector<float> out(static_cast<size_t>(d.out_size), 12345.f);
      std::vector<float> lse(static_cast<size_t>(d.p.B * d.p.Hq * d.p.Nq), 12345.f);
      cpu::flash_attention_forward(d.p, d.q.data(), d.k.data(), d.v.data(), out.data(), lse.data(),
                                   c.score);
      expect_close(d.p, out, lse, ref, 1e-5,
                   c.name + " target " + cpu::flash_target_name(target) + " threads " +
                       std::to_string(threads));
    }
  }
  cpu::flash_force_target(0);
  set_num_threads(0);
}

// bf16 inputs: the oracle sees the same bf16-rounded values in double; P is rounded to bf16
// inside the AVX-512-BF16 path, hence the 1e-2 tolerance. Runs the vdpbf16ps tiles (when the
// CPU has them) and the f32 fallback, on every target.
void check_case_bf16(const Case& c, uint64_t seed = 2) {
  SCOPED_TRACE(c.name + " bf16");
  Data d = make_data(c, seed);
  std::vector<bf16> qb, kb, vb;
  for (auto* pr : {&d.q, &d.k, &d.v}) {
    auto& dst = pr == &d.q ? qb : pr == &d.k ? kb : vb;
    for (float& e : *pr) {
      dst.push_back(f32_to_bf16(e));
      e = bf16_to_f32(dst.back());
    }
  }
  const Oracle ref = ref_forward(d.p, d, c.score);
  for (int64_t target : cpu::flash_supported_targets()) {
    cpu::flash_force_target(target);
    for (auto path : {cpu::Bf16Path::best, cpu::Bf16Path::avx512_bf16, cpu::Bf16Path::f32}) {
      cpu::flash_force_bf16_path(path);
      const std::string path_name = cpu::flash_bf16_path_name();
      for (int threads : {1, 2}) {
        set_num_threads(threads);
        std::vector<float> out(static_cast<size_t>(d.out_size), 12345.f);
        std::vector<float> lse(static_cast<size_t>(d.p.B * d.p.Hq * d.p.Nq), 12345.f);
        cpu::flash_attention_forward_bf16(d.p, qb.data(), kb.data(), vb.data(), out.data(),
                                          lse.data(), c.score);
        expect_close(d.p, out, lse, ref, 1e-2,
                     c.name + " bf16 target " + cpu::flash_target_name(target) +
                         " " + path_name + " threads " + std::to_string(threads));
      }
    }
  }
  cpu::flash_force_bf16_path(cpu::Bf16Path::best);
  cpu::flash_force_target(0);
  set_num_threads(0);
}

TEST(FlashForwardBf16, Shapes) {
  for (int64_t n : {1, 7, 64, 65})
    for (int64_t dim : {1, 16, 63, 64, 80, 128}) {
      Case c;
      c.name = "N=" + std::to_string(n) + " D=" + std::to_string(dim);
      c.Nq = n, c.Nk = n + 2, c.D = dim, c.Dv = dim == 128 ? 33 : dim;
      c.Hq = 2, c.Hkv = 1;
      check_case_bf16(c);
    }
}

TEST(FlashForwardBf16, Masks) {
  Case c;
  c.name = "causal window bias dropout strided";
  c.B = 2, c.Hq = 4, c.Hkv = 2, c.Nq = 70, c.Nk = 150, c.D = 64, c.Dv = 64;
  c.causal = true, c.query_offset = 80, c.window = true, c.wl = 60, c.wr = 0;
  c.bias = Case::Bias::full, c.bias_neg_inf = true, c.dropout = 0.2, c.strided = true;
  c.key_lengths = {150, 111};
  check_case_bf16(c);
  c.name = "cosine";
  c = Case{};
  c.Hq = 2, c.Hkv = 2, c.Nq = 30, c.Nk = 90, c.D = 32, c.Dv = 32;
  c.score = FlashScore::cosine, c.zero_rows = true;
  check_case_bf16(c);
}

TEST(FlashForward, ShapesSweep) {
  for (int64_t n : {1, 2, 7, 63, 64, 65})
    for (int64_t dim : {1, 16, 63, 64, 80, 128, 256}) {
      Case c;
      c.name = "N=" + std::to_string(n) + " D=" + std::to_string(dim);
      c.Nq = n;
      c.Nk = n + (dim % 2);  // Nq != Nk for odd D
      c.D = dim;
      c.Dv = dim == 256 ? 80 : dim;
      c.Hq = 2;
      c.Hkv = 2;
      check_case(c);
    }
}

TEST(FlashForward, LongCausalGqa) {
  Case c;
  c.name = "N=1000 causal GQA";
  c.B = 1, c.Hq = 2, c.Hkv = 1, c.Nq = 1000, c.Nk = 1000, c.D = 16, c.Dv = 16;  // small D: fast under ASan
  c.causal = true;
  check_case(c);
}

TEST(FlashForward, NqDiffersFromNk) {
  Case c;
  c.name = "Nq=1000 Nk=130";
  c.B = 2, c.Hq = 1, c.Hkv = 1, c.Nq = 1000, c.Nk = 130, c.D = 32, c.Dv = 48;
  check_case(c);
  c.name = "Nq=5 Nk=1000";
  c.Nq = 5, c.Nk = 1000;
  check_case(c);
}

TEST(FlashForward, GroupedQuery) {
  Case c;
  c.name = "GQA 6/2";
  c.B = 2, c.Hq = 6, c.Hkv = 2, c.Nq = 37, c.Nk = 70, c.D = 16, c.Dv = 24;
  check_case(c);
  c.name = "MQA 5/1 causal window";
  c.Hq = 5, c.Hkv = 1, c.causal = true, c.window = true, c.wl = 9, c.wr = 0;
  check_case(c);
}

TEST(FlashForward, CausalWithOffset) {
  Case c;
  c.name = "causal offset Nk-Nq";
  c.B = 2, c.Hq = 2, c.Hkv = 2, c.Nq = 70, c.Nk = 200, c.D = 64, c.Dv = 64;
  c.causal = true, c.query_offset = 130;
  check_case(c);
  c.name = "causal negative offset (first rows see nothing)";
  c.Nq = 90, c.Nk = 90, c.query_offset = -20;
  check_case(c);
}

TEST(FlashForward, SlidingWindow) {
  Case c;
  c.name = "window 17/5";
  c.B = 1, c.Hq = 3, c.Hkv = 3, c.Nq = 150, c.Nk = 170, c.D = 32, c.Dv = 32;
  c.window = true, c.wl = 17, c.wr = 5;
  check_case(c);
  c.name = "window 0/0";
  c.wl = 0, c.wr = 0;
  check_case(c);
  c.name = "window past the keys";
  c.wl = 3, c.wr = 3, c.query_offset = 200;
  check_case(c);
}

TEST(FlashForward, KeyLengths) {
  Case c;
  c.name = "key lengths incl. 0";
  c.B = 3, c.Hq = 2, c.Hkv = 1, c.Nq = 20, c.Nk = 150, c.D = 16, c.Dv = 16;
  c.key_lengths = {150, 0, 67};
  check_case(c);
  c.name = "key lengths + causal";
  c.causal = true, c.query_offset = 130;
  check_case(c);
}

// Training batches of short sequences (Transformer and G2P: N 6-32, D 64, padded keys):
// one query block per (batch, head) holding only part of its rows, 4-row tails of the
// register-transposed Q pack (N 13, 6), cross attention with Nq != Nk, causal with an offset.
TEST(FlashForward, ShortSequencesOfTrainingBatches) {
  Case c;
  c.name = "short self, padded keys";
  c.B = 5, c.Hq = 4, c.Hkv = 4, c.Nq = 13, c.Nk = 13, c.D = 64, c.Dv = 64;
  c.key_lengths = {13, 7, 1, 0, 12};
  check_case(c);
  c.name = "short cross, padded keys, strided";
  c.Nq = 6, c.Nk = 16, c.key_lengths = {16, 9, 3, 0, 15}, c.strided = true;
  check_case(c);
  c.name = "short causal with offset";
  c.strided = false, c.key_lengths = {}, c.Nq = 10, c.Nk = 32, c.causal = true, c.query_offset = 22;
  check_case(c);
  c.name = "32 tokens, padded keys, bias";
  c.causal = false, c.query_offset = 0, c.B = 3, c.Nq = 32, c.Nk = 32, c.key_lengths = {32, 17, 31};
  c.bias = Case::Bias::full;
  check_case(c);
}

TEST(FlashForward, AdditiveBias) {
  Case c;
  c.B = 2, c.Hq = 2, c.Hkv = 2, c.Nq = 50, c.Nk = 81, c.D = 16, c.Dv = 16;
  for (auto kind : {Case::Bias::full, Case::Bias::broadcast, Case::Bias::strided}) {
    c.bias = kind;
    c.bias_neg_inf = false;
    c.name = "bias kind " + std::to_string(static_cast<int>(kind));
    check_case(c);
    c.bias_neg_inf = true;
    c.name += " with -inf";
    check_case(c);
  }
}

TEST(FlashForward, Dropout) {
  Case c;
  c.name = "dropout 0.3";
  c.B = 2, c.Hq = 2, c.Hkv = 1, c.Nq = 70, c.Nk = 90, c.D = 32, c.Dv = 16;
  c.dropout = 0.3;
  check_case(c);
  c.causal = true;
  c.name += " causal";
  check_case(c);
}

TEST(FlashForward, StridedInputs) {
  Case c;
  c.name = "strided [B, N, H, D+3]";
  c.B = 2, c.Hq = 4, c.Hkv = 2, c.Nq = 66, c.Nk = 71, c.D = 64, c.Dv = 63;
  c.strided = true;
  c.causal = true, c.query_offset = 5;
  check_case(c);
}

TEST(FlashForward, Cosine) {
  Case c;
  c.name = "cosine with zero rows";
  c.B = 1, c.Hq = 2, c.Hkv = 2, c.Nq = 40, c.Nk = 77, c.D = 48, c.Dv = 32;
  c.score = FlashScore::cosine;
  c.zero_rows = true;
  check_case(c);
}

TEST(FlashForward, DotScore) {
  Case c;
  c.name = "dot (scale 1)";
  c.Hq = 2, c.Hkv = 2, c.Nq = 33, c.Nk = 100, c.D = 16, c.Dv = 16;
  c.scale = 1.0;
  check_case(c);
}

TEST(FlashForward, Decode) {
  // Few query rows over many keys: the dot-product path (D a multiple of the vector width)
  // and, with one head, the split over keys merged by log-sum-exp.
  for (int64_t nq : {1, 2, 3, 4, 5, 16}) {
    Case c;
    c.name = "decode Nq=" + std::to_string(nq);
    c.B = 1, c.Hq = 1, c.Hkv = 1, c.Nq = nq, c.Nk = 3000, c.D = 64, c.Dv = 64;
    c.causal = true, c.query_offset = c.Nk - nq;
    check_case(c);
  }
  Case c;
  c.name = "decode GQA 4/1 with key lengths";
  c.B = 2, c.Hq = 4, c.Hkv = 1, c.Nq = 1, c.Nk = 2000, c.D = 128, c.Dv = 128;
  c.key_lengths = {1999, 700};
  check_case(c);
}

TEST(FlashForward, DeterministicForFixedThreads) {
  Case c;
  c.B = 1, c.Hq = 1, c.Hkv = 1, c.Nq = 3, c.Nk = 5000, c.D = 64, c.Dv = 64;
  const Data d = make_data(c, 3);
  set_num_threads(2);
  std::vector<float> a(static_cast<size_t>(d.out_size)), b2(a.size()), la(3), lb(3);
  cpu::flash_attention_forward(d.p, d.q.data(), d.k.data(), d.v.data(), a.data(), la.data());
  for (int rep = 0; rep < 3; ++rep) {
    cpu::flash_attention_forward(d.p, d.q.data(), d.k.data(), d.v.data(), b2.data(), lb.data());
    ASSERT_EQ(a.size(), b2.size());
    EXPECT_EQ(a, b2);
    EXPECT_EQ(la, lb);
  }
  set_num_threads(0);
}

TEST(FlashForward, General) {
  Case c;
  c.B = 2, c.Hq = 2, c.Hkv = 1, c.Nq = 30, c.Nk = 45, c.D = 12, c.Dv = 8;
  c.causal = true;
  Data d = make_data(c, 5);
  const int64_t Dk = 20;
  // k with Dk columns
  Rng rng(9);
  d.p.Dk = Dk;
  d.p.scale = 1.0;
  d.p.k_stride[0] = c.Hkv * c.Nk * Dk, d.p.k_stride[1] = c.Nk * Dk, d.p.k_stride[2] = Dk;
  d.k.resize(static_cast<size_t>(c.B * c.Hkv * c.Nk * Dk));
  for (auto& e : d.k) e = static_cast<float>(rng.normal());
  std::vector<float> w(static_cast<size_t>(c.D * Dk));
  for (auto& e : w) e = static_cast<float>(0.3 * rng.normal());
  const Oracle ref = ref_forward(d.p, d, FlashScore::dot, &w);
  std::vector<float> out(static_cast<size_t>(d.out_size)), lse(static_cast<size_t>(c.B * c.Hq * c.Nq));
  cpu::flash_attention_forward_general(d.p, d.q.data(), w.data(), d.k.data(), d.v.data(), out.data(),
                                       lse.data());
  expect_close(d.p, out, lse, ref, 1e-5, "general");
}

TEST(FlashForward, WeightsFromLse) {
  for (bool dropout : {false, true}) {
    Case c;
    c.name = dropout ? "weights with dropout" : "weights";
    c.B = 2, c.Hq = 4, c.Hkv = 2, c.Nq = 57, c.Nk = 140, c.D = 40, c.Dv = 16;
    c.causal = true, c.query_offset = 20, c.bias = Case::Bias::broadcast, c.bias_neg_inf = true;
    c.window = true, c.wl = 50, c.wr = 3;
    c.dropout = dropout ? 0.25 : 0.0;
    c.key_lengths = {140, 90};
    c.score = dropout ? FlashScore::dot : FlashScore::cosine;
    SCOPED_TRACE(c.name);
    const Data d = make_data(c, 11);
    const Oracle ref = ref_forward(d.p, d, c.score);
    std::vector<float> out(static_cast<size_t>(d.out_size)), lse(ref.lse.size());
    cpu::flash_attention_forward(d.p, d.q.data(), d.k.data(), d.v.data(), out.data(), lse.data(),
                                 c.score);
    // Full weights.
    std::vector<float> w(ref.weights.size(), -1.f);
    cpu::attention_weights_from_lse(d.p, d.q.data(), d.k.data(), lse.data(), 0, c.Nq, w.data(), c.score);
    ASSERT_EQ(w.size(), ref.weights.size());
    for (size_t e = 0; e < w.size(); ++e)
      ASSERT_NEAR(w[e], ref.weights[e], 1e-5 * std::max(1.0, ref.weights[e])) << "element " << e;
    // Rows [10, 13) only.
    const int64_t r0 = 10, r1 = 13;
    std::vector<float> wr(static_cast<size_t>(c.B * c.Hq * (r1 - r0) * c.Nk), -1.f);
    cpu::attention_weights_from_lse(d.p, d.q.data(), d.k.data(), lse.data(), r0, r1, wr.data(), c.score);
    for (int64_t bh = 0; bh < c.B * c.Hq; ++bh)
      for (int64_t i = r0; i < r1; ++i)
        for (int64_t j = 0; j < c.Nk; ++j) {
          const double x = wr[static_cast<size_t>((bh * (r1 - r0) + i - r0) * c.Nk + j)];
          const double y = ref.weights[static_cast<size_t>((bh * c.Nq + i) * c.Nk + j)];
          ASSERT_NEAR(x, y, 1e-5 * std::max(1.0, y)) << "bh " << bh << " i " << i << " j " << j;
        }
  }
}

TEST(FlashExp2, Accuracy) {
  // Max relative error of the kernel's exp2 over [-126, 0] and exact 0 for -inf.
  std::vector<float> x, y;
  for (double t = -126.0; t <= 0.0; t += 0.000731) x.push_back(static_cast<float>(t));
  x.push_back(-std::numeric_limits<float>::infinity());
  x.push_back(-200.f);
  y.resize(x.size());
  for (int64_t target : cpu::flash_supported_targets()) {
    cpu::flash_force_target(target);
    cpu::flash_exp2(x.data(), y.data(), static_cast<int64_t>(x.size()));
    double worst = 0;
    for (size_t e = 0; e + 2 < x.size(); ++e)
      worst = std::max(worst, std::abs(y[e] / std::exp2(double(x[e])) - 1.0));
    EXPECT_LE(worst, 1.2e-7) << cpu::flash_target_name(target);
    EXPECT_EQ(y[x.size() - 2], 0.f);
    EXPECT_EQ(y[x.size() - 1], 0.f);
  }
  cpu::flash_force_target(0);
}

}  // namespace
}  // namespace attn
