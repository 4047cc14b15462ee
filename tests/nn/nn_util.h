// Helpers shared by the nn tests.
#pragma once

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "../autograd/test_util.h"
#include "attn/nn/module.h"

namespace attn::nn::testing {

using ag::testing::expect_close;
using ag::testing::expect_gradcheck;
using ag::testing::leaf;

inline std::vector<std::string> names(const Module& m) {
  std::vector<std::string> out;
  for (const auto& p : m.named_parameters()) out.push_back(p.name);
  return out;
}

inline std::vector<Var> with(std::vector<Var> a, const std::vector<Var>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace attn::nn::testing
