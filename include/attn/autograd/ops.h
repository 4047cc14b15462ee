// Every differentiable op of the tape (one include for model code).
#pragma once

#include "attn/autograd/additive_score.h"
#include "attn/autograd/attention_op.h"
#include "attn/autograd/conv.h"
#include "attn/autograd/dropout.h"
#include "attn/autograd/elementwise.h"
#include "attn/autograd/glu.h"
#include "attn/autograd/layer_norm.h"
#include "attn/autograd/loss.h"
#include "attn/autograd/matmul.h"
#include "attn/autograd/packed_attention.h"
#include "attn/autograd/reduce.h"
#include "attn/autograd/rnn_cell.h"
#include "attn/autograd/shape_ops.h"
#include "attn/autograd/softmax.h"
#include "attn/autograd/var.h"
