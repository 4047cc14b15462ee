// The tape: leaves, result nodes, topological backward, gradient accumulation.
#include "attn/autograd/var.h"

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "attn/kernels/cpu/gemm.h"
#include "attn/kernels/cpu/gemm_bf16.h"
#include "autograd/op_util.h"

namespace attn::ag {

namespace {
thread_local bool g_grad_enabled = true;
}

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }

Var::Var(Tensor value, bool requires_grad) : node_(std::make_shared<Node>()) {
  ATTN_CHECK(value.defined(), "Var: value is undefined");
  node_->value = std::move(value);
  node_->requires_grad = requires_grad;
}

void Var::zero_grad() const {
  if (!node_->grad.defined() || !node_->grad.is_contiguous())
    node_->grad = Tensor::empty(node_->value.shape(), node_->value.dtype());
  detail::zero(node_->grad);
}

void Var::backward() const {
  ATTN_CHECK(defined() && numel() == 1, "Var::backward: needs a scalar (1 element), got shape ",
             defined() ? shape_str(shape()) : std::string("<undefined>"),
             "; pass a seed gradient for non-scalars");
  backward(Tensor::full(shape(), 1.f, dtype()));
}

void Var::backward(const Tensor& dout) const {
  ATTN_CHECK(defined(), "Var::backward: undefined Var");
  ATTN_CHECK(dout.shape() == shape(), "Var::backward: seed gradient has shape ", shape_str(dout.shape()),
             " but the value has shape ", shape_str(shape()));
  if (!node_->requires_grad) return;
  // Iterative DFS post-order: deep RNN graphs would overflow a recursive one.
  std::vector<Node*> order;
  std::unordered_set<Node*> seen;
  // Owners of every node in the graph: releasing a node's inputs below must not free nodes
  // that are still to run.
  std::vector<std::shared_ptr<Node>> keep;
  std::vector<std::pair<Node*, size_t>> stack{{node_.get(), 0}};
  seen.insert(node_.get());
  while (!stack.empty()) {
    auto& [n, i] = stack.back();
    if (i < n->inputs.size()) {
      const std::shared_ptr<Node>& cp = n->inputs[i++];
      Node* c = cp.get();
      if (c && c->requires_grad && !seen.count(c)) {
        seen.insert(c);
        keep.push_back(cp);
        stack.push_back({c, 0});
      }
    } else {
      order.push_back(n);
      stack.pop_back();
    }
  }
  detail::accumulate(*node_, dout.to(dtype()).contiguous());
  for (size_t k = order.size(); k-- > 0;) {
    Node* n = order[k];
    if (!n->backward) continue;  // leaf
    if (n->grad.defined()) n->backward(*n);
    // Release the graph behind this node (retain_graph = false) and its intermediate grad.
    n->backward = nullptr;
    n->inputs.clear();
    n->grad = Tensor();
  }
}

namespace detail {

static Var make_node(Tensor value, const char* op, std::vector<std::shared_ptr<Node>> ins,
                     bool rg, BackwardFn backward) {
  auto n = std::make_shared<Node>();
  n->value = std::move(value);
  n->op = op;
  if (rg) {
    n->requires_grad = true;
    n->inputs = std::move(ins);
    n->backward = std::move(backward);
  }
  return Var(std::move(n));
}

Var make_result(Tensor value, const char* op, std::initializer_list<const Var*> inputs,
                BackwardFn backward) {
  bool rg = needs_grad(inputs);
  std::vector<std::shared_ptr<Node>> ins;
  if (rg)
    for (const Var* v : inputs) ins.push_back(v->defined() ? v->node_ptr() : nullptr);
  return make_node(std::move(value), op, std::move(ins), rg, std::move(backward));
}

Var make_result(Tensor value, const char* op, const std::vector<Var>& inputs, BackwardFn backward) {
  bool rg = false;
  if (grad_enabled())
    for (const Var& v : inputs) rg = rg || (v.defined() && v.requires_grad());
  std::vector<std::shared_ptr<Node>> ins;
  if (rg)
    for (const Var& v : inputs) ins.push_back(v.defined() ? v.node_ptr() : nullptr);
  return make_node(std::move(value), op, std::move(ins), rg, std::move(backward));
}

Tensor& grad_buffer(Node& n, bool* acc) {
  if (n.grad.defined()) {
    *acc = true;
  } else if (n.grad_view.dim >= 0 && !n.inputs.empty() && n.inputs[0] && n.inputs[0]->requires_grad) {
    // A block of the input's gradient (allocated and zeroed first if it has none, as the
    // op's own backward would have done): consumers add into it in place.
    Node& in = *n.inputs[0];
    bool in_acc;
    Tensor& g = grad_buffer(in, &in_acc);
    if (!in_acc) zero(g);
    if (!g.is_contiguous()) {
      n.grad = Tensor::empty(n.value.shape(), n.value.dtype());
      *acc = false;
      return n.grad;
    }
    n.grad = g.slice(n.grad_view.dim, n.grad_view.start, n.grad_view.end);
    *acc = true;
  } else {
    n.grad = Tensor::empty(n.value.shape(), n.value.dtype());
    *acc = false;
  }
  return n.grad;
}

void accumulate(Node& n, const Tensor& g) {
  ATTN_CHECK(g.shape() == n.value.shape(), "autograd: gradient of shape ", shape_str(g.shape()),
             " for a value of shape ", shape_str(n.value.shape()), " (op ", n.op, ")");
  bool acc;
  Tensor& dst = grad_buffer(n, &acc);
  if (!acc) {
    dst.copy_from(g);
    return;
  }
  dispatch(dst.dtype(), "autograd", [&](auto tag) {
    using T = decltype(tag);
    Tensor keep;
    const T* s = cdata<T>(g, &keep);
    T* d = dst.data<T>();
    const int64_t m = dst.numel();
    for (int64_t i = 0; i < m; ++i) d[i] += s[i];
  });
}

Tensor contiguous(const Tensor& t) {
  if (t.is_contiguous()) return t;
  if (t.dtype() != DType::f32 && t.dtype() != DType::f64) return t.contiguous();
  Tensor out = Tensor::empty(t.shape(), t.dtype());
  dispatch(t.dtype(), "contiguous", [&](auto tag) {
    using T = decltype(tag);
    const T* src = t.data<T>();
    T* dst = out.data<T>();
    const Shape& sh = t.shape();
    const Shape& st = t.strides();
    const size_t nd = sh.size();
    const int64_t inner = sh[nd - 1], is = st[nd - 1], rows = t.numel() / std::max<int64_t>(inner, 1);
    std::vector<int64_t> idx(nd, 0);
    int64_t off = 0;
    for (int64_t r = 0; r < rows; ++r) {
      T* d = dst + r * inner;
      if (is == 1)
        std::memcpy(static_cast<void*>(d), src + off, sizeof(T) * static_cast<size_t>(inner));
      else
        for (int64_t j = 0; j < inner; ++j) d[j] = src[off + j * is];
      for (size_t k = nd - 1; k-- > 0;) {
        if (++idx[k] < sh[k]) {
          off += st[k];
          break;
        }
        off -= (sh[k] - 1) * st[k];
        idx[k] = 0;
      }
    }
  });
  return out;
}

Shape broadcast_shape(const char* op, const Shape& a, const Shape& b) {
  const size_t nd = std::max(a.size(), b.size());
  Shape out(nd);
  for (size_t i = 0; i < nd; ++i) {
    int64_t da = i < nd - a.size() ? 1 : a[i - (nd - a.size())];
    int64_t db = i < nd - b.size() ? 1 : b[i - (nd - b.size())];
    ATTN_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
               " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Shape broadcast_strides(const Shape& s, const Shape& out) {
  Shape st(out.size(), 0);
  Shape cs = contiguous_strides(s);
  const size_t off = out.size() - s.size();
  for (size_t i = 0; i < s.size(); ++i) st[i + off] = s[i] == 1 ? 0 : cs[i];
  return st;
}

int64_t wrap_dim(const char* op, int64_t d, int64_t ndim, const Shape& shape) {
  int64_t w = d < 0 ? d + ndim : d;
  ATTN_CHECK(w >= 0 && w < ndim, op, ": dim ", d, " out of range for shape ", shape_str(shape));
  return w;
}

AxisSplit split_axis(const Shape& s, int64_t d) {
  AxisSplit r;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i) {
    if (i < d) r.outer *= s[i];
    else if (i == d) r.n = s[i];
    else r.inner *= s[i];
  }
  return r;
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  // sgemm, or bf16_gemm when training asked for bf16 products (cpu::matmul_precision()).
  cpu::gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

namespace {
template <typename T>
void fill_rows(int64_t rows, int64_t N, const T* bias, T* out) {
  for_row_blocks(rows, N, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      std::memcpy(static_cast<void*>(out + r * N), bias, sizeof(T) * static_cast<size_t>(N));
  });
}
}  // namespace

void gemm_xwt_bias(int64_t rows, int64_t N, int64_t K, const float* x, const float* w, const float* bias,
                   float* out) {
  if (cpu::matmul_precision() == cpu::MatmulPrecision::bf16) {
    cpu::bf16_gemm_bias(false, true, rows, N, K, x, K, w, K, bias, out, N);
    return;
  }
  fill_rows(rows, N, bias, out);
  gemm(false, true, rows, N, K, 1.f, x, K, w, K, 1.f, out, N);
}

void gemm_xwt_bias(int64_t rows, int64_t N, int64_t K, const double* x, const double* w, const double* bias,
                   double* out) {
  fill_rows(rows, N, bias, out);
  gemm(false, true, rows, N, K, 1.0, x, K, w, K, 1.0, out, N);
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
          int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
      C[i * ldc + j] = alpha * s + (beta == 0 ? 0.0 : beta * C[i * ldc + j]);
    }
}

}  // namespace detail
}  // namespace attn::ag
