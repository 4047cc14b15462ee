// Counter-based random numbers: a value is a pure function of (seed, counter), so any thread
// can draw the number for any position without shared state, and results do not depend on
// the thread count or the order of work. The mixer is SplitMix64's finaliser applied twice
// (Steele, Lea & Flood 2014), which passes BigCrush for sequential counters.
#pragma once

#include <cstdint>

namespace attn {

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// 64 random bits for (seed, counter).
inline uint64_t counter_random(uint64_t seed, uint64_t counter) {
  return mix64(mix64(seed + 0x9e3779b97f4a7c15ULL) ^ (counter * 0xd1b54a32d192ed03ULL));
}

// Uniform in [0, 1) with 24 bits of precision.
inline float counter_uniform(uint64_t seed, uint64_t counter) {
  return static_cast<float>(counter_random(seed, counter) >> 40) * (1.0f / 16777216.0f);
}

// Attention dropout decision for weight (b, h, i, j) of a [B, H, Nq, Nk] weight tensor:
// true when the weight is kept. The same on every code path.
inline bool dropout_keep(uint64_t seed, double rate, int64_t b, int64_t h, int64_t i, int64_t j,
                         int64_t H, int64_t Nq, int64_t Nk) {
  uint64_t counter = static_cast<uint64_t>(((b * H + h) * Nq + i) * Nk + j);
  return counter_uniform(seed, counter) >= rate;
}

// A sequential generator for initialisation and data shuffling: state is (seed, counter),
// so it can be saved in a checkpoint and resumed exactly.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0, uint64_t counter = 0) : seed_(seed), counter_(counter) {}
  uint64_t next_u64() { return counter_random(seed_, counter_++); }
  // Uniform in [0, 1).
  double uniform() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }
  // Standard normal (Box-Muller).
  double normal();
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n) { return n ? next_u64() % n : 0; }
  uint64_t seed() const { return seed_; }
  uint64_t counter() const { return counter_; }

 private:
  uint64_t seed_;
  uint64_t counter_;
};

}  // namespace attn
