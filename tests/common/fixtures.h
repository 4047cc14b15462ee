// Test helpers for the PyTorch fixtures in tests/fixtures/ (written by tools/make_fixtures.py):
// load one by name, and compare tensors shape first, then values, printing the first
// mismatches and the largest difference (the llm.c habit).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

#include "attn/core/tensor.h"
#include "attn/io/safetensors.h"

namespace attn::testing {

inline std::string fixture_path(const std::string& name) {
  return std::string(ATTN_SOURCE_DIR) + "/tests/fixtures/" + name + ".safetensors";
}

inline io::Safetensors load_fixture(const std::string& name) { return io::read_safetensors(fixture_path(name)); }

// |actual - expected| <= atol + rtol * |expected| element-wise, after checking the shapes.
inline ::testing::AssertionResult tensors_close(const Tensor& actual, const Tensor& expected, double rtol,
                                                double atol, const std::string& what = "") {
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << what << ": shape " << shape_str(actual.shape()) << " but expected "
                                         << shape_str(expected.shape());
  const auto a = actual.to_vector();
  const auto e = expected.to_vector();
  std::ostringstream first;
  int bad = 0;
  double max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - e[i]);
    const bool ok = d <= atol + rtol * std::fabs(static_cast<double>(e[i])) || (std::isnan(a[i]) && std::isnan(e[i]));
    if (!std::isnan(d)) max_diff = std::max(max_diff, d);
    if (!ok) {
      if (bad < 5) first << "\n  [" << i << "] " << a[i] << " vs expected " << e[i];
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << a.size()
                                       << " elements differ (max |diff| " << max_diff << ")" << first.str();
}

}  // namespace attn::testing
