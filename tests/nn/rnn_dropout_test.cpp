// Dropout between the layers of a multi-layer GRU / LSTM: active in training only, and its
// masks a function of (seed, step) once begin_step is called, so a resumed run draws the
// same masks as an uninterrupted one.
#include <gtest/gtest.h>

#include <vector>

#include "attn/autograd/ops.h"
#include "attn/core/rng.h"
#include "attn/nn/rnn.h"

namespace attn::nn {
namespace {

Tensor random_input(int64_t B, int64_t T, int64_t in, uint64_t seed) {
  Rng rng(seed, 0);
  std::vector<float> x(static_cast<size_t>(B * T * in));
  for (float& v : x) v = static_cast<float>(rng.normal());
  return Tensor::from_vector(x, {B, T, in});
}

std::vector<float> run(RnnBase& rnn, const Tensor& x) {
  ag::NoGradGuard g;
  RnnOutput o = rnn.forward(Var(x, false));
  EXPECT_EQ(o.output.shape(), (Shape{2, 5, 12}));
  return o.output.value().to_vector();
}

TEST(RnnDropout, BeginStepFixesTheInterLayerMasks) {
  for (bool lstm : {false, true}) {
    SCOPED_TRACE(lstm ? "LSTM" : "GRU");
    RnnOptions o;
    o.input_size = 4;
    o.hidden_size = 6;
    o.num_layers = 2;
    o.bidirectional = true;
    o.dropout = 0.5;
    Rng init(11, 0);
    std::unique_ptr<RnnBase> rnn;
    if (lstm)
      rnn = std::make_unique<LSTM>(o, init);
    else
      rnn = std::make_unique<GRU>(o, init);
    const Tensor x = random_input(2, 5, 4, 12);

    rnn->eval();
    const std::vector<float> plain = run(*rnn, x);
    rnn->train();
    rnn->begin_step(7);
    const std::vector<float> a = run(*rnn, x);
    const std::vector<float> a_next = run(*rnn, x);  // same step, stream moved on: new masks
    rnn->begin_step(8);
    const std::vector<float> b = run(*rnn, x);
    rnn->begin_step(7);
    const std::vector<float> a_again = run(*rnn, x);

    EXPECT_NE(a, plain) << "no dropout between the layers in training";
    EXPECT_NE(a, a_next);
    EXPECT_NE(a, b);
    EXPECT_EQ(a, a_again) << "masks not a function of (seed, step)";
    // A fresh module with the same init and step draws the same masks (what a resumed
    // process does).
    Rng init2(11, 0);
    std::unique_ptr<RnnBase> fresh;
    if (lstm)
      fresh = std::make_unique<LSTM>(o, init2);
    else
      fresh = std::make_unique<GRU>(o, init2);
    fresh->train();
    fresh->begin_step(7);
    EXPECT_EQ(run(*fresh, x), a);
    // Dropout acts only between layers: a one-layer module ignores it.
    RnnOptions one = o;
    one.num_layers = 1;
    Rng init3(11, 0);
    GRU single(one, init3);
    single.begin_step(7);
    ag::NoGradGuard g;
    const std::vector<float> t1 = single.forward(Var(x, false)).output.value().to_vector();
    single.eval();
    EXPECT_EQ(single.forward(Var(x, false)).output.value().to_vector(), t1);
  }
}

}  // namespace
}  // namespace attn::nn
