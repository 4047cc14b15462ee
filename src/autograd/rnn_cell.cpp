// Fused recurrent cells: forward and backward side by side.
#include "attn/autograd/rnn_cell.h"

#include <cmath>
#include <vector>

#include "attn/autograd/matmul.h"
#include "attn/autograd/shape_ops.h"
#include "autograd/op_util.h"

namespace attn::ag {

using detail::dispatch;
using detail::gemm;
using detail::grad_buffer;
using detail::grad_target;
using detail::make_result;

namespace {

template <typename T>
T sigm(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

void check_cell(const char* op, int64_t gates, const Var& gi, const Var& h, const Var& w_hh, const Var& b_hh,
                const Tensor& active) {
  ATTN_CHECK(h.dim() == 2, op, ": h must be [B, H], got ", shape_str(h.shape()));
  const int64_t B = h.size(0), H = h.size(1);
  ATTN_CHECK(gi.dim() == 2 && gi.size(0) == B && gi.size(1) == gates * H, op, ": gi ", shape_str(gi.shape()),
             " does not match h ", shape_str(h.shape()), "; expected [", B, ", ", gates * H, "]");
  ATTN_CHECK(w_hh.dim() == 2 && w_hh.size(0) == gates * H && w_hh.size(1) == H, op, ": w_hh ",
             shape_str(w_hh.shape()), " expected [", gates * H, ", ", H, "]");
  if (b_hh.defined())
    ATTN_CHECK(b_hh.dim() == 1 && b_hh.size(0) == gates * H, op, ": b_hh ", shape_str(b_hh.shape()),
               " expected [", gates * H, "]");
  if (active.defined())
    ATTN_CHECK(active.dtype() == DType::i32 && active.dim() == 1 && active.size(0) == B, op,
               ": active must be i32 [", B, "], got ", shape_str(active.shape()));
  detail::check_same_dtype(op, gi, h);
  detail::check_same_dtype(op, gi, w_hh);
}

// gh = h W_hhᵀ + b_hh  ([B, G])
template <typename T>
void hidden_gates(const Tensor& hv, const Tensor& wv, const Tensor& bv, int64_t B, int64_t G, int64_t H, T* gh) {
  T beta = 0;
  if (bv.defined()) {
    const T* pb = bv.data<T>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < G; ++j) gh[b * G + j] = pb[j];
    beta = 1;
  }
  gemm(false, true, B, G, H, T(1), hv.data<T>(), H, wv.data<T>(), H, beta, gh, G);
}

// The GEMM half of a cell's backward: dh += dgh W_hh, dW_hh += dghᵀ h, db_hh += sum dgh.
template <typename T>
void hidden_backward(Node& self, const std::vector<T>& dgh, const Tensor& hv, const Tensor& wv, int64_t B,
                     int64_t G, int64_t H, size_t ih, size_t iw, size_t ib, T* dh_direct) {
  bool acc;
  if (Node* t = grad_target(self, ih)) {
    T* d = grad_buffer(*t, &acc).data<T>();
    // d = (acc ? d : 0) + dh_direct + dgh W_hh
    for (int64_t i = 0; i < B * H; ++i) d[i] = (acc ? d[i] : T(0)) + dh_direct[i];
    gemm(false, false, B, H, G, T(1), dgh.data(), G, wv.data<T>(), H, T(1), d, H);
  }
  if (Node* t = grad_target(self, iw)) {
    T* d = grad_buffer(*t, &acc).data<T>();
    gemm(true, false, G, H, B, T(1), dgh.data(), G, hv.data<T>(), H, T(acc), d, H);
  }
  if (Node* t = grad_target(self, ib)) {
    T* d = grad_buffer(*t, &acc).data<T>();
    if (!acc)
      for (int64_t j = 0; j < G; ++j) d[j] = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < G; ++j) d[j] += dgh[b * G + j];
  }
}

template <typename T>
void add_into(Node& self, size_t i, const std::vector<T>& g) {
  if (Node* t = grad_target(self, i)) {
    bool acc;
    T* d = grad_buffer(*t, &acc).data<T>();
    for (size_t k = 0; k < g.size(); ++k) d[k] = acc ? d[k] + g[k] : g[k];
  }
}

}  // namespace

Var gru_cell(const Var& gi, const Var& h, const Var& w_hh, const Var& b_hh, const Tensor& active_in) {
  check_cell("gru_cell", 3, gi, h, w_hh, b_hh, active_in);
  const int64_t B = h.size(0), H = h.size(1), G = 3 * H;
  Tensor giv = gi.value().contiguous(), hv = h.value().contiguous(), wv = w_hh.value().contiguous();
  Tensor bv = b_hh.defined() ? b_hh.value().contiguous() : Tensor();
  Tensor active = active_in.defined() ? active_in.contiguous() : Tensor();
  Tensor out = Tensor::empty({B, H}, h.dtype());
  // Saved for the backward: [r, z, n, W_hn h + b_hn] per row, [B, 4H].
  Tensor saved = Tensor::empty({B, 4 * H}, h.dtype());
  dispatch(h.dtype(), "gru_cell", [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> gh(static_cast<size_t>(B * G));
    hidden_gates<T>(hv, wv, bv, B, G, H, gh.data());
    const T* x = giv.data<T>();
    const T* hp = hv.data<T>();
    const int32_t* act = active.defined() ? active.data<int32_t>() : nullptr;
    T* o = out.data<T>();
    T* s = saved.data<T>();
    for (int64_t b = 0; b < B; ++b) {
      const T* xr = x + b * G;
      const T* gr = gh.data() + b * G;
      T* sr = s + b * 4 * H;
      const bool on = !act || act[b] != 0;
      for (int64_t j = 0; j < H; ++j) {
        const T r = sigm(xr[j] + gr[j]);
        const T z = sigm(xr[H + j] + gr[H + j]);
        const T n = std::tanh(xr[2 * H + j] + r * gr[2 * H + j]);
        sr[j] = r;
        sr[H + j] = z;
        sr[2 * H + j] = n;
        sr[3 * H + j] = gr[2 * H + j];
        o[b * H + j] = on ? (1 - z) * n + z * hp[b * H + j] : hp[b * H + j];
      }
    }
  });
  return make_result(out, "gru_cell", {&gi, &h, &w_hh, &b_hh}, [hv, wv, saved, active, B, H, G](Node& self) {
    // h' = (1 - z) n + z h;  n = tanh(gi_n + r ghn);  r = σ(gi_r + gh_r);  z = σ(gi_z + gh_z)
    // dn = dh' (1 - z);  dz = dh' (h - n);  dh = dh' z + dgh W_hh
    // da_n = dn (1 - n²) -> dgi_n = da_n, dgh_n = da_n r;  dr = da_n ghn
    // dgi_r = dgh_r = dr r (1 - r);  dgi_z = dgh_z = dz z (1 - z)
    dispatch(self.value.dtype(), "gru_cell", [&](auto tag) {
      using T = decltype(tag);
      const T* g = self.grad.data<T>();
      const T* s = saved.data<T>();
      const T* hp = hv.data<T>();
      const int32_t* act = active.defined() ? active.data<int32_t>() : nullptr;
      std::vector<T> dgi(static_cast<size_t>(B * G)), dgh(static_cast<size_t>(B * G)), dh(static_cast<size_t>(B * H));
      for (int64_t b = 0; b < B; ++b) {
        const T* sr = s + b * 4 * H;
        const bool on = !act || act[b] != 0;
        for (int64_t j = 0; j < H; ++j) {
          const int64_t k = b * G;
          const T gj = g[b * H + j];
          if (!on) {
            dh[b * H + j] = gj;
            dgi[k + j] = dgi[k + H + j] = dgi[k + 2 * H + j] = 0;
            dgh[k + j] = dgh[k + H + j] = dgh[k + 2 * H + j] = 0;
            continue;
          }
          const T r = sr[j], z = sr[H + j], n = sr[2 * H + j], ghn = sr[3 * H + j];
          const T dn = gj * (1 - z), dz = gj * (hp[b * H + j] - n);
          dh[b * H + j] = gj * z;
          const T dan = dn * (1 - n * n);
          const T dar = dan * ghn * r * (1 - r);
          const T daz = dz * z * (1 - z);
          dgi[k + j] = dgh[k + j] = dar;
          dgi[k + H + j] = dgh[k + H + j] = daz;
          dgi[k + 2 * H + j] = dan;
          dgh[k + 2 * H + j] = dan * r;
        }
      }
      add_into<T>(self, 0, dgi);
      hidden_backward<T>(self, dgh, hv, wv, B, G, H, 1, 2, 3, dh.data());
    });
  });
}

std::pair<Var, Var> lstm_cell(const Var& gi, const Var& h, const Var& c, const Var& w_hh, const Var& b_hh,
                              const Tensor& active_in) {
  check_cell("lstm_cell", 4, gi, h, w_hh, b_hh, active_in);
  ATTN_CHECK(c.shape() == h.shape(), "lstm_cell: c ", shape_str(c.shape()), " must match h ", shape_str(h.shape()));
  detail::check_same_dtype("lstm_cell", h, c);
  const int64_t B = h.size(0), H = h.size(1), G = 4 * H;
  Tensor giv = gi.value().contiguous(), hv = h.value().contiguous(), cv = c.value().contiguous();
  Tensor wv = w_hh.value().contiguous();
  Tensor bv = b_hh.defined() ? b_hh.value().contiguous() : Tensor();
  Tensor active = active_in.defined() ? active_in.contiguous() : Tensor();
  Tensor out = Tensor::empty({2, B, H}, h.dtype());  // [h'; c']
  Tensor saved = Tensor::empty({B, G}, h.dtype());  // activated gates i, f, g, o
  dispatch(h.dtype(), "lstm_cell", [&](auto tag) {
    using T = decltype(tag);
    T* a = saved.data<T>();
    hidden_gates<T>(hv, wv, bv, B, G, H, a);
    const T* x = giv.data<T>();
    const T* hp = hv.data<T>();
    const T* cp = cv.data<T>();
    const int32_t* act = active.defined() ? active.data<int32_t>() : nullptr;
    T* oh = out.data<T>();
    T* oc = oh + B * H;
    for (int64_t b = 0; b < B; ++b) {
      T* ar = a + b * G;
      const T* xr = x + b * G;
      const bool on = !act || act[b] != 0;
      for (int64_t j = 0; j < H; ++j) {
        const T i = sigm(xr[j] + ar[j]), f = sigm(xr[H + j] + ar[H + j]);
        const T gg = std::tanh(xr[2 * H + j] + ar[2 * H + j]), o = sigm(xr[3 * H + j] + ar[3 * H + j]);
        ar[j] = i;
        ar[H + j] = f;
        ar[2 * H + j] = gg;
        ar[3 * H + j] = o;
        const T cn = f * cp[b * H + j] + i * gg;
        oc[b * H + j] = on ? cn : cp[b * H + j];
        oh[b * H + j] = on ? o * std::tanh(cn) : hp[b * H + j];
      }
    }
  });
  Var hc = make_result(out, "lstm_cell", {&gi, &h, &c, &w_hh, &b_hh}, [hv, cv, wv, saved, active, B, H, G](Node& self) {
    // c' = f c + i g;  h' = o tanh(c')
    // do = dh' tanh(c');  dc* = dc' + dh' o (1 - tanh²(c'))
    // di = dc* g;  df = dc* c;  dg = dc* i;  dc = dc* f;  pre-activation: σ' = s(1-s), tanh' = 1-t²
    dispatch(self.value.dtype(), "lstm_cell", [&](auto tag) {
      using T = decltype(tag);
      const T* gh = self.grad.data<T>();
      const T* gc = gh + B * H;
      const T* a = saved.data<T>();
      const T* cp = cv.data<T>();
      const int32_t* act = active.defined() ? active.data<int32_t>() : nullptr;
      std::vector<T> dga(static_cast<size_t>(B * G)), dh(static_cast<size_t>(B * H)), dc(static_cast<size_t>(B * H));
      for (int64_t b = 0; b < B; ++b) {
        const T* ar = a + b * G;
        T* dr = dga.data() + b * G;
        const bool on = !act || act[b] != 0;
        for (int64_t j = 0; j < H; ++j) {
          const int64_t k = b * H + j;
          if (!on) {
            dh[k] = gh[k];
            dc[k] = gc[k];
            dr[j] = dr[H + j] = dr[2 * H + j] = dr[3 * H + j] = 0;
            continue;
          }
          const T i = ar[j], f = ar[H + j], gg = ar[2 * H + j], o = ar[3 * H + j];
          const T cn = f * cp[k] + i * gg, tc = std::tanh(cn);
          const T dcs = gc[k] + gh[k] * o * (1 - tc * tc);
          dr[j] = dcs * gg * i * (1 - i);
          dr[H + j] = dcs * cp[k] * f * (1 - f);
          dr[2 * H + j] = dcs * i * (1 - gg * gg);
          dr[3 * H + j] = gh[k] * tc * o * (1 - o);
          dh[k] = 0;
          dc[k] = dcs * f;
        }
      }
      add_into<T>(self, 0, dga);
      add_into<T>(self, 2, dc);
      hidden_backward<T>(self, dga, hv, wv, B, G, H, 1, 3, 4, dh.data());
    });
  });
  Var hn = reshape(slice(hc, 0, 0, 1), {B, H});
  Var cn = reshape(slice(hc, 0, 1, 2), {B, H});
  return {hn, cn};
}

Var gru_cell(const Var& x, const Var& h, const Var& w_ih, const Var& w_hh, const Var& b_ih, const Var& b_hh) {
  return gru_cell(linear(x, w_ih, b_ih), h, w_hh, b_hh);
}

std::pair<Var, Var> lstm_cell(const Var& x, const Var& h, const Var& c, const Var& w_ih, const Var& w_hh,
                              const Var& b_ih, const Var& b_hh) {
  return lstm_cell(linear(x, w_ih, b_ih), h, c, w_hh, b_hh);
}

}  // namespace attn::ag
