// Training with bf16 matrix products (cpu::MatmulPrecision::bf16): the autograd products go
// through bf16_gemm, and the toy reversal task still reaches the bars the f32 test
// (trainer_test.cpp, Trainer.LearnsToReverseSequences) sets.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "attn/autograd/matmul.h"
#include "attn/autograd/ops.h"
#include "attn/core/rng.h"
#include "attn/data/batching.h"
#include "attn/decode/rnn_step_decoder.h"
#include "attn/decode/search.h"
#include "attn/kernels/cpu/gemm.h"
#include "attn/kernels/cpu/gemm_bf16.h"
#include "attn/models/seq2seq_rnn.h"
#include "attn/train/trainer.h"
#include "common/toy_tasks.h"

namespace attn::train {
namespace {

Tensor random_tensor(const Shape& shape, uint64_t seed) {
  Rng rng(seed, 0);
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(2 * rng.uniform() - 1);
  return Tensor::from_vector(v, shape);
}

// ag::linear's product y = x Wᵀ is bf16_gemm's in bf16 mode and sgemm's otherwise, bit for bit.
TEST(Bf16MatmulTraining, LinearRoutesThroughThePrecision) {
  const Tensor x = random_tensor({37, 50}, 1), w = random_tensor({23, 50}, 2);
  std::vector<float> want16(37 * 23), want32(37 * 23);
  cpu::bf16_gemm(false, true, 37, 23, 50, 1.f, x.data<float>(), 50, w.data<float>(), 50, 0.f, want16.data(), 23);
  cpu::sgemm(false, true, 37, 23, 50, 1.f, x.data<float>(), 50, w.data<float>(), 50, 0.f, want32.data(), 23);
  auto run = [&] {
    Tensor y = ag::linear(ag::Var(x), ag::Var(w)).value();
    EXPECT_EQ(y.shape(), (Shape{37, 23}));
    return y.to_vector();
  };
  const std::vector<float> y32 = run();
  std::vector<float> y16;
  {
    cpu::MatmulPrecisionScope bf16(cpu::MatmulPrecision::bf16);
    y16 = run();
  }
  ASSERT_EQ(y32.size(), want32.size());
  ASSERT_EQ(y16.size(), want16.size());
  EXPECT_EQ(0, std::memcmp(y32.data(), want32.data(), want32.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(y16.data(), want16.data(), want16.size() * sizeof(float)));
}

using testing::batch_loss;
using testing::greedy_fn;
using testing::toy_config;

// The f32 test's recipe and bars (trainer_test.cpp), every product in bf16.
TEST(Bf16MatmulTraining, LearnsToReverseSequencesLikeF32) {
  cpu::MatmulPrecisionScope bf16(cpu::MatmulPrecision::bf16);
  const auto train = testing::reversal_data(512, 1), dev = testing::reversal_data(64, 2);
  Rng init(3, 0);
  models::Seq2SeqRNN model(toy_config(), init);
  const double before = batch_loss(model, dev);
  TrainOptions o;
  o.quiet = true;
  o.handle_signals = false;
  o.batch_size = 16;
  o.lr = 1e-2;
  o.warmup_steps = 20;
  o.label_smoothing = 0.0;
  o.eval_every = 100;
  o.max_steps = 300;
  DecodeFn greedy = greedy_fn(model);
  TrainResult r = train_seq2seq(model, train, testing::eval_set(dev), greedy, o);
  EXPECT_EQ(r.steps, 300);
  const double after = batch_loss(model, dev);
  EXPECT_GT(before, 2.0);
  EXPECT_LT(after, 0.25) << "before " << before;
  EXPECT_GT(r.last.accuracy, 0.5);
}

}  // namespace
}  // namespace attn::train
