// 1-D convolution as K shifted GEMMs (one per tap) over the channels-last activations,
// forward and backward side by side. No unfolded (im2col) copy of the input is made.
#include "attn/autograd/conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "autograd/op_util.h"

namespace attn::ag {

using detail::dispatch;
using detail::gemm;
using detail::grad_buffer;
using detail::grad_target;
using detail::make_result;

namespace {

// y[b, t, :] = bias + Σ_k x[b, t + d_k, :] · W_kᵀ with the tap offset d_k = k dil - pad and
// W_k = weight[:, :, k] [Cout, Cin]; x is zero outside [0, L).
//
// Each tap is one GEMM over a run of rows. When Lout == L ("same" padding) output row r of
// the flattened batch [B·L] reads input row r + d_k for every sequence at once, so a tap is one
// GEMM over the whole batch: the rows [t0, (B-1) L + t1) with t0, t1 the tap's valid output
// steps. The run then also pairs |d_k| rows at each sequence boundary with the neighbouring
// sequence ("crossing" rows); the callers undo those exactly (forward: the output rows are
// saved and restored; backward: the dy rows are zeroed in a scratch copy). Otherwise (Lout !=
// L) every sequence is its own run, which has no crossing rows.
struct ConvGeom {
  int64_t B, L, Cin, Cout, K, Lout, pad, dil;
  int64_t offset(int64_t k) const { return k * dil - pad; }
  // Valid output steps of tap k: t + offset(k) in [0, L).
  int64_t t0(int64_t k) const { return std::clamp<int64_t>(-offset(k), 0, Lout); }
  int64_t t1(int64_t k) const { return std::clamp<int64_t>(L - offset(k), 0, Lout); }
  bool flat() const { return L == Lout; }
  // Runs: `runs` groups of `seqs` sequences, each run one GEMM per tap.
  int64_t runs() const { return flat() ? 1 : B; }
  int64_t seqs() const { return flat() ? B : 1; }
};

// One tap's GEMM rows within run g: output rows [out_begin, out_begin + rows) read input rows
// [in_begin, in_begin + rows); crossing rows are the output rows of steps outside [t0, t1)
// strictly inside the run (empty when the run is one sequence).
struct TapRun {
  int64_t out_begin = 0, in_begin = 0, rows = 0;
};

TapRun tap_run(const ConvGeom& g, int64_t run, int64_t k) {
  TapRun r;
  const int64_t t0 = g.t0(k), t1 = g.t1(k);
  if (t1 <= t0) return r;  // the tap never lands inside the input
  const int64_t first = run * g.seqs();
  r.out_begin = first * g.Lout + t0;
  r.in_begin = first * g.L + t0 + g.offset(k);
  r.rows = (g.seqs() - 1) * g.Lout + t1 - t0;
  return r;
}

// Calls f(row) for each crossing output row of tap k (flat runs only; relative to the batch).
template <typename F>
void for_crossing_rows(const ConvGeom& g, int64_t k, F&& f) {
  if (!g.flat() || g.B == 1) return;
  const int64_t t0 = g.t0(k), t1 = g.t1(k);
  if (t1 <= t0) return;
  for (int64_t b = 0; b < g.B; ++b) {
    if (b > 0)
      for (int64_t t = 0; t < t0; ++t) f(b * g.L + t);
    if (b < g.B - 1)
      for (int64_t t = t1; t < g.L; ++t) f(b * g.L + t);
  }
}

// weight [Cout, Cin, K] -> wk [K, Cout, Cin]: each tap's matrix contiguous for the BLAS.
template <typename T>
void weight_to_taps(const T* w, const ConvGeom& g, T* wk) {
  const int64_t tap = g.Cout * g.Cin;
  for (int64_t oc = 0; oc < tap; ++oc)
    for (int64_t k = 0; k < g.K; ++k) wk[k * tap + oc] = w[oc * g.K + k];
}

// dw [Cout, Cin, K] (+)= dwk [K, Cout, Cin].
template <typename T>
void taps_to_weight_grad(const T* dwk, const ConvGeom& g, bool acc, T* dw) {
  const int64_t tap = g.Cout * g.Cin;
  for (int64_t oc = 0; oc < tap; ++oc)
    for (int64_t k = 0; k < g.K; ++k) {
      const T v = dwk[k * tap + oc];
      T& d = dw[oc * g.K + k];
      d = acc ? d + v : v;
    }
}

}  // namespace

Var conv1d(const Var& x, const Var& w, const Var& bias, int64_t padding, int64_t dilation) {
  detail::check_same_dtype("conv1d", x, w);
  ATTN_CHECK(x.dim() == 3 && w.dim() == 3 && x.size(2) == w.size(1),
             "conv1d: expected x [B, L, Cin] and weight [Cout, Cin, K] with equal Cin, got x ", shape_str(x.shape()),
             " and weight ", shape_str(w.shape()));
  ATTN_CHECK(padding >= 0 && dilation >= 1, "conv1d: padding ", padding, " must be >= 0 and dilation ", dilation,
             " >= 1 (x ", shape_str(x.shape()), ", weight ", shape_str(w.shape()), ")");
  ConvGeom g{x.size(0), x.size(1), x.size(2), w.size(0), w.size(2), 0, padding, dilation};
  g.Lout = g.L + 2 * padding - dilation * (g.K - 1);
  ATTN_CHECK(g.K >= 1 && g.Lout >= 1, "conv1d: output length ", g.Lout, " < 1 for x ", shape_str(x.shape()),
             ", weight ", shape_str(w.shape()), ", padding ", padding, ", dilation ", dilation);
  if (bias.defined()) {
    detail::check_same_dtype("conv1d", x, bias);
    ATTN_CHECK(bias.dim() == 1 && bias.size(0) == g.Cout, "conv1d: bias ", shape_str(bias.shape()),
               " does not match weight ", shape_str(w.shape()));
  }
  Tensor xv = detail::contiguous(x.value());
  Tensor wk = Tensor::empty({g.K, g.Cout, g.Cin}, x.dtype());
  Tensor out = Tensor::empty({g.B, g.Lout, g.Cout}, x.dtype());
  dispatch(x.dtype(), "conv1d", [&](auto tag) {
    using T = decltype(tag);
    Tensor wv = detail::contiguous(w.value());
    weight_to_taps(wv.data<T>(), g, wk.data<T>());
    T* y = out.data<T>();
    const T* px = xv.data<T>();
    const int64_t Cin = g.Cin, Cout = g.Cout, rows = g.B * g.Lout;
    // y starts as the bias (or zero); every tap then adds (beta = 1).
    if (bias.defined()) {
      Tensor bv = detail::contiguous(bias.value());
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(y + r * Cout, bv.data<T>(), sizeof(T) * static_cast<size_t>(Cout));
    } else {
      detail::zero(out);
    }
    std::vector<T> saved;
    for (int64_t k = 0; k < g.K; ++k) {
      // y[rows] += x[rows + d_k] · W_kᵀ, the crossing rows saved before and put back after.
      saved.clear();
      for_crossing_rows(g, k, [&](int64_t r) { saved.insert(saved.end(), y + r * Cout, y + (r + 1) * Cout); });
      const T* wt = wk.data<T>() + k * Cout * Cin;
      for (int64_t run = 0; run < g.runs(); ++run) {
        const TapRun tr = tap_run(g, run, k);
        if (tr.rows > 0)
          gemm(false, true, tr.rows, Cout, Cin, T(1), px + tr.in_begin * Cin, Cin, wt, Cin, T(1),
               y + tr.out_begin * Cout, Cout);
      }
      const T* s = saved.data();
      for_crossing_rows(g, k, [&](int64_t r) {
        std::memcpy(y + r * Cout, s, sizeof(T) * static_cast<size_t>(Cout));
        s += Cout;
      });
    }
  });
  return make_result(out, "conv1d", {&x, &w, &bias}, [xv, wk, g](Node& self) {
    // y[r] = b + Σ_k x[r + d_k] · W_kᵀ:  dx[r + d_k] += dy[r] · W_k,  dW_k = Σ_r dy[r]ᵀ x[r + d_k],
    // db = Σ_r dy[r], the sums over each tap's valid rows r.
    dispatch(self.value.dtype(), "conv1d", [&](auto tag) {
      using T = decltype(tag);
      const T* dy = self.grad.data<T>();
      const T* px = xv.data<T>();
      const int64_t Cin = g.Cin, Cout = g.Cout, rows = g.B * g.Lout;
      Node* tx = grad_target(self, 0);
      Node* tw = grad_target(self, 1);
      bool acc = false;
      T* dx = nullptr;
      if (tx) {
        Tensor& dxt = grad_buffer(*tx, &acc);
        if (!acc) detail::zero(dxt);
        dx = dxt.data<T>();
      }
      Tensor dwk;
      if (tw) dwk = Tensor::empty({g.K, Cout, Cin}, self.value.dtype());
      if (tx || tw) {
        // A scratch copy of dy whose crossing rows are zeroed for each tap, so that they add
        // nothing to dx or dW_k (exactly, unlike subtracting them afterwards).
        Tensor dyz;
        const T* dyk = dy;
        const bool crossing = g.flat() && g.B > 1 && g.K > 1;
        if (crossing) {
          dyz = Tensor::empty({rows, Cout}, self.value.dtype());
          std::memcpy(dyz.data<T>(), dy, sizeof(T) * static_cast<size_t>(rows * Cout));
          dyk = dyz.data<T>();
        }
        for (int64_t k = 0; k < g.K; ++k) {
          if (crossing)
            for_crossing_rows(g, k, [&](int64_t r) {
              std::memset(static_cast<void*>(dyz.data<T>() + r * Cout), 0, sizeof(T) * static_cast<size_t>(Cout));
            });
          const T* wt = wk.data<T>() + k * Cout * Cin;
          T* dwt = tw ? dwk.data<T>() + k * Cout * Cin : nullptr;
          bool first = true;  // dW_k is written by its first run, then accumulated
          for (int64_t run = 0; run < g.runs(); ++run) {
            const TapRun tr = tap_run(g, run, k);
            if (tr.rows == 0) continue;
            const T* d = dyk + tr.out_begin * Cout;
            if (tx) gemm(false, false, tr.rows, Cin, Cout, T(1), d, Cout, wt, Cin, T(1), dx + tr.in_begin * Cin, Cin);
            if (tw) {
              gemm(true, false, Cout, Cin, tr.rows, T(1), d, Cout, px + tr.in_begin * Cin, Cin, T(first ? 0 : 1), dwt,
                   Cin);
              first = false;
            }
          }
          if (tw && first) std::fill(dwt, dwt + Cout * Cin, T(0));  // the tap never lands inside x
          if (crossing)
            for_crossing_rows(g, k, [&](int64_t r) {
              std::memcpy(dyz.data<T>() + r * Cout, dy + r * Cout, sizeof(T) * static_cast<size_t>(Cout));
            });
        }
      }
      if (tw) {
        bool accw;
        T* dw = grad_buffer(*tw, &accw).data<T>();
        taps_to_weight_grad(dwk.data<T>(), g, accw, dw);
      }
      if (Node* t = grad_target(self, 2)) {
        bool accb;
        T* db = grad_buffer(*t, &accb).data<T>();
        if (!accb) std::fill(db, db + Cout, T(0));
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t o = 0; o < Cout; ++o) db[o] += dy[r * Cout + o];
      }
    });
  });
}

}  // namespace attn::ag
