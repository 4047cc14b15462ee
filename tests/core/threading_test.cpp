// attn::omp_wait_policy(): the label of the OpenMP wait policy in logs and metrics files
// follows the precedence libgomp applies to its environment variables.
#include "attn/core/threading.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

namespace attn {
namespace {

// Sets (or, with nullopt, removes) an environment variable for the scope; restores it after.
class EnvScope {
 public:
  EnvScope(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      setenv(name, value->c_str(), 1);
    else
      unsetenv(name);
  }
  ~EnvScope() {
    if (old_)
      setenv(name_, old_->c_str(), 1);
    else
      unsetenv(name_);
  }
  EnvScope(const EnvScope&) = delete;
  EnvScope& operator=(const EnvScope&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// The label logs and metrics files carry must name the variable libgomp obeys: GOMP_SPINCOUNT
// overrides OMP_WAIT_POLICY, and with neither set libgomp spins before sleeping.
TEST(Threading, OmpWaitPolicyNamesWhatLibgompObeys) {
  {
    EnvScope policy("OMP_WAIT_POLICY", std::nullopt);
    EnvScope spin("GOMP_SPINCOUNT", std::nullopt);
    EXPECT_EQ(omp_wait_policy(), "libgomp default: spin, then sleep");
  }
  {
    EnvScope policy("OMP_WAIT_POLICY", "PASSIVE");
    EnvScope spin("GOMP_SPINCOUNT", std::nullopt);
    EXPECT_EQ(omp_wait_policy(), "OMP_WAIT_POLICY=PASSIVE");
  }
  {
    EnvScope policy("OMP_WAIT_POLICY", "PASSIVE");
    EnvScope spin("GOMP_SPINCOUNT", "300000");
    EXPECT_EQ(omp_wait_policy(), "GOMP_SPINCOUNT=300000");
  }
}

}  // namespace
}  // namespace attn
