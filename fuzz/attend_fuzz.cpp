// libFuzzer target for the `attn attend` argument set: the bytes choose shapes (including
// 0 and mismatched ones), dtypes, strides and every option of AttentionOptions /
// AttentionExtras (score function, scale, temperature, causal, offset, window, key lengths,
// bias, dropout, weights, check_finite), plus the values. attention_forward / backward must
// either throw attn::Error — on the automatic and reference backends alike — or succeed on
// both with the automatic backend matching the double-precision reference.
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "attn/attention/attention.h"

namespace {

using attn::Tensor;

float pick_value(FuzzedDataProvider& fdp, bool& finite) {
  switch (fdp.ConsumeIntegralInRange<int>(0, 15)) {
    case 0: finite = false; return std::numeric_limits<float>::quiet_NaN();
    case 1: finite = false; return std::numeric_limits<float>::infinity();
    case 2: return 1e-40f;  // denormal
    case 3: return 0.f;
    default: return static_cast<float>(fdp.ConsumeIntegralInRange<int>(-64, 64)) / 32.f;
  }
}

// A [..shape] tensor of f32 or bf16, sometimes a non-contiguous view (a transposed copy).
Tensor make(FuzzedDataProvider& fdp, const attn::Shape& shape, bool& finite, bool allow_bf16 = true) {
  for (int64_t s : shape)
    if (s < 0 || s > 4096) return Tensor();
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  const bool special = fdp.ConsumeBool();
  for (int64_t i = 0; i < t.numel(); ++i)
    p[i] = special ? pick_value(fdp, finite) : static_cast<float>(fdp.ConsumeIntegralInRange<int>(-64, 64)) / 32.f;
  const int mode = fdp.ConsumeIntegralInRange<int>(0, 3);
  if (mode == 1 && allow_bf16) return t.to(attn::DType::bf16);
  if (mode == 2 && t.dim() >= 2) {
    // Same values, strided: a transposed contiguous copy viewed back.
    const int64_t a = t.dim() - 2, b = t.dim() - 1;
    return t.transpose(a, b).clone().transpose(a, b);
  }
  return t;
}

int64_t small(FuzzedDataProvider& fdp, int64_t hi) { return fdp.ConsumeIntegralInRange<int64_t>(0, hi); }

// |a - b| within tolerance, or both the same non-finite value.
bool close(const Tensor& a, const Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  if (a.shape() != b.shape()) return false;
  const Tensor ac = a.to(attn::DType::f32).clone(), bc = b.to(attn::DType::f32).clone();
  const float* x = ac.data<float>();
  const float* y = bc.data<float>();
  for (int64_t i = 0; i < ac.numel(); ++i) {
    if (std::isnan(x[i]) || std::isnan(y[i])) return false;  // finite inputs never give NaN
    if (std::isinf(x[i]) || std::isinf(y[i])) {
      if (x[i] != y[i]) return false;
      continue;
    }
    if (std::fabs(x[i] - y[i]) > 2e-3f * (1.f + std::fabs(y[i]))) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  bool finite = true;
  const bool big = fdp.ConsumeIntegralInRange<int>(0, 7) == 0;
  const int64_t nmax = big ? 80 : 6, dmax = big ? 20 : 5;
  const int rank = fdp.ConsumeIntegralInRange<int>(2, 4);
  const int64_t B = small(fdp, 2), Hkv = small(fdp, 2), group = small(fdp, 2);
  const int64_t Hq = fdp.ConsumeBool() ? Hkv * group : small(fdp, 3);
  const int64_t Nq = small(fdp, nmax), Nk = small(fdp, nmax);
  const int64_t D = small(fdp, dmax);
  const int64_t Dk = fdp.ConsumeBool() ? D : small(fdp, dmax);
  const int64_t Dv = small(fdp, dmax);
  auto shape4 = [&](int64_t h, int64_t n, int64_t d) -> attn::Shape {
    if (rank == 2) return {n, d};
    if (rank == 3) return {h, n, d};
    return {B, h, n, d};
  };

  attn::AttentionOptions o;
  o.score = static_cast<attn::ScoreFn>(fdp.ConsumeIntegralInRange<int>(0, 4));
  if (fdp.ConsumeIntegralInRange<int>(0, 3) == 0)
    o.scale = fdp.ConsumeBool() ? std::numeric_limits<double>::infinity() : fdp.ConsumeFloatingPointInRange(-2.0, 2.0);
  if (fdp.ConsumeIntegralInRange<int>(0, 3) == 0) o.temperature = fdp.ConsumeFloatingPointInRange(-1.0, 4.0);
  o.causal = fdp.ConsumeBool();
  switch (fdp.ConsumeIntegralInRange<int>(0, 5)) {
    case 0: o.query_offset = fdp.ConsumeIntegral<int64_t>(); break;
    case 1: o.query_offset = fdp.ConsumeIntegralInRange<int64_t>(-8, 8); break;
    default: break;
  }
  if (fdp.ConsumeBool()) {
    auto side = [&]() -> int64_t {
      switch (fdp.ConsumeIntegralInRange<int>(0, 3)) {
        case 0: return std::numeric_limits<int64_t>::max();
        case 1: return fdp.ConsumeIntegral<int64_t>();
        default: return fdp.ConsumeIntegralInRange<int64_t>(0, 6);
      }
    };
    o.window = attn::Window{side(), side()};
  }
  switch (fdp.ConsumeIntegralInRange<int>(0, 7)) {
    case 0: o.dropout = 0.25; break;
    case 1: o.dropout = fdp.ConsumeFloatingPointInRange(-0.5, 1.5); break;
    default: break;
  }
  o.seed = fdp.ConsumeIntegral<uint64_t>();
  o.need_weights = fdp.ConsumeBool();
  o.check_finite = fdp.ConsumeBool();

  Tensor q = make(fdp, shape4(Hq, Nq, D), finite);
  Tensor k = make(fdp, shape4(Hkv, Nk, Dk), finite);
  Tensor v = make(fdp, shape4(Hkv, Nk, Dv), finite);
  if (!q.defined() || !k.defined() || !v.defined()) return 0;

  attn::AttentionExtras x;
  const int64_t A = 1 + small(fdp, 3);
  const bool params_right = fdp.ConsumeIntegralInRange<int>(0, 5) != 0;
  const bool general = (o.score == attn::ScoreFn::general) == params_right;
  const bool additive = (o.score == attn::ScoreFn::additive) == params_right;
  if (general) x.w = make(fdp, {fdp.ConsumeBool() ? D : small(fdp, 3), Dk}, finite);
  if (additive) {
    x.wq = make(fdp, {A, D}, finite);
    x.wk = make(fdp, {A, fdp.ConsumeBool() ? Dk : small(fdp, 3)}, finite);
    x.va = make(fdp, {A}, finite);
  }
  if (fdp.ConsumeIntegralInRange<int>(0, 3) == 0) {
    const int64_t nb = fdp.ConsumeBool() ? (rank == 4 ? B : 1) : small(fdp, 3);
    std::vector<int32_t> len(static_cast<size_t>(nb));
    for (auto& l : len) l = fdp.ConsumeIntegralInRange<int32_t>(-1, static_cast<int32_t>(Nk) + 1);
    x.key_lengths = Tensor::from_vector_i32(len, {nb});
  }
  if (fdp.ConsumeIntegralInRange<int>(0, 3) == 0) {
    attn::Shape bs;
    switch (fdp.ConsumeIntegralInRange<int>(0, 3)) {
      case 0: bs = {Nq, Nk}; break;
      case 1: bs = {1, Hq, Nq, Nk}; break;
      case 2: bs = {rank == 4 ? B : 1, 1, Nq, Nk}; break;
      default: bs = {small(fdp, 2), small(fdp, 2), small(fdp, 3), small(fdp, 3)}; break;
    }
    bool bias_finite = true;
    x.bias = make(fdp, bs, bias_finite, false);
    if (x.bias.defined() && x.bias.numel() > 0 && fdp.ConsumeBool())  // hide some keys
      x.bias.data<float>()[fdp.ConsumeIntegralInRange<int64_t>(0, x.bias.numel() - 1)] =
          -std::numeric_limits<float>::infinity();
  }

  // Forward on both backends: both throw (attn::Error only — anything else escapes and
  // crashes the fuzzer) or both succeed.
  attn::AttentionOptions ref_o = o;
  ref_o.backend = attn::AttentionBackend::reference;
  std::optional<attn::AttentionOutput> fa, fr;
  std::string ea, er;
  try { fa = attn::attention_forward(q, k, v, x, o); } catch (const attn::Error& e) { ea = e.what(); }
  try { fr = attn::attention_forward(q, k, v, x, ref_o); } catch (const attn::Error& e) { er = e.what(); }
  if (fa.has_value() != fr.has_value()) __builtin_trap();
  if (!fa) return 0;
  if (ea != er) __builtin_trap();
  if (fa->out.shape() != fr->out.shape() || fa->lse.shape() != fr->lse.shape()) __builtin_trap();
  if (finite && (!close(fa->out, fr->out) || !close(fa->lse, fr->lse) || !close(fa->weights, fr->weights)))
    __builtin_trap();

  bool dout_finite = true;
  Tensor dout = make(fdp, fa->out.shape(), dout_finite, false);
  if (!dout.defined()) return 0;
  std::optional<attn::AttentionGrads> ga, gr;
  try { ga = attn::attention_backward(q, k, v, x, o, *fa, dout); } catch (const attn::Error&) {}
  try { gr = attn::attention_backward(q, k, v, x, ref_o, *fr, dout); } catch (const attn::Error&) {}
  if (ga.has_value() != gr.has_value()) __builtin_trap();
  if (!ga) return 0;
  if (ga->dq.shape() != q.shape() || ga->dk.shape() != k.shape() || ga->dv.shape() != v.shape()) __builtin_trap();
  if (finite && dout_finite &&
      (!close(ga->dq, gr->dq) || !close(ga->dk, gr->dk) || !close(ga->dv, gr->dv) || !close(ga->dw, gr->dw) ||
       !close(ga->dwq, gr->dwq) || !close(ga->dwk, gr->dwk) || !close(ga->dva, gr->dva) ||
       !close(ga->dbias, gr->dbias)))
    __builtin_trap();
  return 0;
}
