// attn::ag::Var — a value on the reverse-mode tape (micrograd / PyTorch autograd style).
//
// A Var is a shared handle to a Node: the value Tensor, its gradient, and — for results of
// differentiable ops — the input nodes and a backward closure that reads this node's grad
// and adds into the inputs' grads. backward() sorts the graph topologically and runs the
// closures in reverse order. Values are f32 in training; every op also runs in f64 so that
// gradients can be checked by central differences in double precision (gradcheck.h).
//
//   Var w(Tensor::zeros({4, 3}), /*requires_grad=*/true);
//   Var loss = ag::mean(ag::tanh(ag::matmul(x, w)));
//   loss.backward();          // w.grad() now holds d loss / d w
//
// Gradients accumulate (like PyTorch): call zero_grad() between steps. After backward()
// the intermediate nodes release their closures and grads (PyTorch's retain_graph=false),
// so a graph is differentiated once.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "attn/core/tensor.h"

namespace attn::ag {

struct Node;

// Reads self.grad and adds the input gradients into self.inputs[i]->grad.
using BackwardFn = std::function<void(Node& self)>;

struct Node {
  Tensor value;  // contiguous for op results
  Tensor grad;   // undefined until a gradient flows in; then contiguous, value's shape and dtype
  bool requires_grad = false;
  const char* op = "leaf";
  std::vector<std::shared_ptr<Node>> inputs;
  BackwardFn backward;  // empty for leaves
  // Set by ops whose value is the contiguous block [start, end) along dim of inputs[0] (a
  // slice of a contiguous tensor along its outermost non-unit dim, e.g. rows of a packed
  // weight): this node's gradient buffer is then that block of inputs[0]'s gradient, so the
  // ops that consume it add straight into the input's gradient (no temporary, no copy back).
  struct GradView {
    int64_t dim = -1;  // -1: none
    int64_t start = 0, end = 0;
  } grad_view;
};

class Var {
 public:
  Var() = default;
  // A leaf. With requires_grad, backward() accumulates into grad().
  explicit Var(Tensor value, bool requires_grad = false);
  explicit Var(std::shared_ptr<Node> node) : node_(std::move(node)) {}

  bool defined() const { return node_ != nullptr; }
  const Tensor& value() const { return node_->value; }
  // Mutable access to a leaf's value (optimizers, gradient checks); never resize it.
  Tensor& mutable_value() const { return node_->value; }
  Tensor& grad() const { return node_->grad; }
  bool requires_grad() const { return node_ && node_->requires_grad; }
  const Shape& shape() const { return node_->value.shape(); }
  int64_t dim() const { return node_->value.dim(); }
  int64_t size(int64_t d) const { return node_->value.size(d); }
  int64_t numel() const { return node_->value.numel(); }
  DType dtype() const { return node_->value.dtype(); }
  const char* op() const { return node_->op; }

  // Backpropagates from this scalar (numel() == 1) with seed gradient 1.
  void backward() const;
  // Backpropagates with seed gradient dout (value's shape).
  void backward(const Tensor& dout) const;
  // Sets grad to zeros (allocating it if undefined).
  void zero_grad() const;
  // The same value without history.
  Var detach() const { return Var(node_->value, false); }

  Node* node() const { return node_.get(); }
  const std::shared_ptr<Node>& node_ptr() const { return node_; }

 private:
  std::shared_ptr<Node> node_;
};

// Whether new ops record history (thread-local; on by default).
bool grad_enabled();

// Turns recording off for the scope (evaluation, decoding, numerical differences).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace attn::ag
