// Numerical gradient checking by central differences, in double precision.
//
// Design: every autograd op is one template over the element type and runs in f32 (training)
// or f64 (DType::f64, for these checks). A check builds its leaves in f64, runs the function
// once with the tape to get analytic gradients of L = sum(out * R) for a fixed random R,
// then perturbs each leaf element by ±eps with recording off and compares
//   (L(x + eps) - L(x - eps)) / (2 eps)
// with the analytic value. In double the rounding error of the difference is ~1e-16 / eps and
// the truncation error ~eps², so eps = 1e-6 leaves both near 1e-10 and tolerances can be tight.
// Modules are checked the same way after converting their parameters to f64 (Module::to).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "attn/autograd/var.h"
#include "attn/core/rng.h"

namespace attn::ag {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-5;
  uint64_t seed = 1234;  // for the random output weights R
  int max_reports = 5;   // mismatches listed in the report
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_err = 0;
  int64_t checked = 0;  // number of leaf elements compared
  std::string report;   // the first mismatches: leaf, flat index, analytic, numeric
};

// f builds the output from the leaves (it is called 1 + 2 * numel(leaves) times and must be
// deterministic). Leaves must be f64 Vars with requires_grad; their grads are overwritten.
GradcheckResult gradcheck(const std::function<Var()>& f, const std::vector<Var>& leaves,
                          const GradcheckOptions& opts = {});

// Uniform values in [lo, hi) of the given shape and dtype (f32 or f64), from rng.
Tensor random_tensor(const Shape& shape, Rng& rng, double lo = -1.0, double hi = 1.0, DType dtype = DType::f64);

}  // namespace attn::ag
