// Helpers shared by the autograd tests.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "attn/autograd/gradcheck.h"
#include "attn/autograd/ops.h"

namespace attn::ag::testing {

// A fresh f64 leaf with requires_grad, uniform in [lo, hi).
inline Var leaf(const Shape& shape, Rng& rng, double lo = -1.0, double hi = 1.0) {
  return Var(random_tensor(shape, rng, lo, hi, DType::f64), true);
}

// Runs gradcheck and fails the test with its report.
inline void expect_gradcheck(const std::function<Var()>& f, const std::vector<Var>& leaves,
                             GradcheckOptions opts = {}) {
  GradcheckResult r = gradcheck(f, leaves, opts);
  EXPECT_GT(r.checked, 0);
  EXPECT_TRUE(r.ok) << r.report;
}

inline std::vector<double> values64(const Tensor& t) {
  Tensor c = t.to(DType::f64).contiguous();
  return std::vector<double>(c.data<double>(), c.data<double>() + c.numel());
}

// Shape first, then every element within atol + rtol |b|; prints the first mismatches.
inline void expect_close(const Tensor& a, const Tensor& b, double atol, double rtol, const std::string& what = "") {
  ASSERT_EQ(a.shape(), b.shape()) << what << ": shapes " << shape_str(a.shape()) << " vs " << shape_str(b.shape());
  auto va = values64(a), vb = values64(b);
  int bad = 0;
  double maxd = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    double d = std::abs(va[i] - vb[i]);
    maxd = std::max(maxd, std::isnan(d) ? INFINITY : d);
    if (!(d <= atol + rtol * std::abs(vb[i]))) {
      if (bad < 5) ADD_FAILURE() << what << " element " << i << ": " << va[i] << " vs " << vb[i];
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << va.size() << " mismatch; max |diff| " << maxd;
}

}  // namespace attn::ag::testing
