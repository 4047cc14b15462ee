#!/usr/bin/python3
"""Writes the PyTorch reference fixtures under tests/fixtures/ (run with Debian's python3:
`/usr/bin/python3 tools/make_fixtures.py`; needs torch 1.13 and numpy, nothing else).

Each fixture is one safetensors file, written by the small writer below (the `safetensors`
package is not needed). Tensor names:
  param.<state_dict name>       module parameters before the forward
  input.<name>                  inputs; masks are I32 with 1 = masked (PyTorch's bool True)
  output.<name>                 outputs
  input.grad_weight.<output>    fixed random weights; loss = sum_k sum(output.k * grad_weight.k)
  grad.input.<name>             d loss / d input  (floating inputs only)
  grad.param.<state_dict name>  d loss / d parameter
__metadata__: script, torch version, config (JSON of the constructor arguments), notes.
Every fixture is seeded on its own, so adding one does not change the others.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures")
SCRIPT = "tools/make_fixtures.py"

_NP_DTYPES = {
    np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
    np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.int16): "I16",
    np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.uint16): "U16",
    np.dtype(np.uint32): "U32", np.dtype(np.uint64): "U64", np.dtype(np.bool_): "BOOL",
}


class BF16:
    """A bfloat16 tensor's raw bits (numpy has no bfloat16)."""

    def __init__(self, t):
        self.bits = t.detach().to(torch.bfloat16).contiguous().view(torch.int16).numpy()
        self.shape = list(t.shape)


def write_safetensors(path, tensors, metadata):
    """The safetensors format: u64 LE header length, JSON header (padded with spaces to a
    multiple of 8), then the tensors' bytes in name order."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name]
        if isinstance(t, BF16):
            dtype, shape, raw = "BF16", t.shape, t.bits.astype("<i2").tobytes()
        else:
            a = np.ascontiguousarray(t).reshape(np.shape(t))  # ascontiguousarray makes 0-d arrays 1-d
            dtype, shape = _NP_DTYPES[a.dtype], list(a.shape)
            raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def np32(t):
    # .numpy() shares memory with the tensor: copy, or later in-place updates would leak in.
    return t.detach().cpu().to(torch.float32).numpy().copy()


def mask_i32(m):
    return m.detach().cpu().to(torch.int32).numpy().copy()


def metadata(config, notes):
    return {"script": SCRIPT, "torch": torch.__version__, "config": json.dumps(config, sort_keys=True),
            "notes": notes}


def randomize(module, scale=0.5):
    """Non-trivial values for every parameter (default inits leave biases at zero and layer
    norm at identity, which would hide bugs in their use)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * scale)


def module_fixture(name, module, inputs, forward, config, notes, grad_outputs=None):
    """inputs: name -> tensor (floating ones get gradients). forward(module, inputs) returns
    name -> output tensor. grad_outputs: outputs included in the loss (default: all)."""
    tensors = {}
    for k, v in module.state_dict().items():
        tensors["param." + k] = np32(v)
    leaf = {}
    for k, v in inputs.items():
        if v.is_floating_point():
            leaf[k] = v.detach().clone().requires_grad_(True)
            tensors["input." + k] = np32(v)
        else:
            leaf[k] = v
            tensors["input." + k] = mask_i32(v)
    outs = forward(module, leaf)
    loss = 0
    for k, v in outs.items():
        tensors["output." + k] = np32(v)
        if grad_outputs is None or k in grad_outputs:
            gw = torch.randn_like(v)
            tensors["input.grad_weight." + k] = np32(gw)
            loss = loss + (v * gw).sum()
    loss.backward()
    for k, v in leaf.items():
        if v.is_floating_point():
            tensors["grad.input." + k] = np32(v.grad)
    for k, p in module.named_parameters():
        tensors["grad.param." + k] = np32(p.grad) if p.grad is not None else np.zeros(p.shape, np.float32)
    write_safetensors(os.path.join(OUT, name + ".safetensors"), tensors, metadata(config, notes))


# ---------------------------------------------------------------- modules

def linear():
    torch.manual_seed(1)
    cfg = {"in_features": 5, "out_features": 4, "bias": True}
    m = nn.Linear(**cfg)
    randomize(m)
    module_fixture("linear", m, {"x": torch.randn(2, 3, 5)}, lambda m, i: {"y": m(i["x"])}, cfg,
                   "y = x W^T + b; x: [2, 3, 5]")


def embedding():
    torch.manual_seed(2)
    cfg = {"num_embeddings": 10, "embedding_dim": 4, "padding_idx": 0}
    m = nn.Embedding(**cfg)
    randomize(m)
    with torch.no_grad():
        m.weight[0].zero_()  # as PyTorch's own initialisation leaves it
    ids = torch.tensor([[1, 0, 3, 3, 9], [0, 0, 2, 7, 1]])
    module_fixture("embedding", m, {"ids": ids}, lambda m, i: {"y": m(i["ids"])}, cfg,
                   "ids: [2, 5] I32 with repeats and padding; grad.param.weight row 0 (padding_idx) is zero")


def layer_norm():
    torch.manual_seed(3)
    cfg = {"normalized_shape": 6, "eps": 1e-5}
    m = nn.LayerNorm(**cfg)
    randomize(m)
    module_fixture("layer_norm", m, {"x": torch.randn(2, 3, 6) * 2 + 1}, lambda m, i: {"y": m(i["x"])}, cfg,
                   "normalises over the last dim; biased variance")


def conv1d():
    """torch.nn.Conv1d on channels-last input (attn's layout): the forward transposes
    [B, L, C] to torch's [B, C, L] and back, so input.x and output.y are [B, L, C]."""
    for name, seed, cfg, L in (("conv1d", 14, {"in_channels": 3, "out_channels": 4, "kernel_size": 3,
                                               "padding": 2, "dilation": 2, "bias": True}, 5),
                               ("conv1d_valid", 15, {"in_channels": 2, "out_channels": 3, "kernel_size": 5,
                                                     "padding": 0, "dilation": 1, "bias": True}, 7)):
        torch.manual_seed(seed)
        m = nn.Conv1d(**cfg)
        randomize(m)
        x = torch.randn(2, L, cfg["in_channels"])
        module_fixture(name, m, {"x": x}, lambda m, i: {"y": m(i["x"].transpose(1, 2)).transpose(1, 2)}, cfg,
                       "channels last: x [2, %d, %d] -> y [B, L + 2 padding - dilation (K - 1), out]"
                       % (L, cfg["in_channels"]))


def rnn(kind):
    torch.manual_seed(4 if kind == "gru" else 5)
    cfg = {"input_size": 4, "hidden_size": 5, "num_layers": 2, "bidirectional": True, "batch_first": True}
    m = (nn.GRU if kind == "gru" else nn.LSTM)(**cfg)
    randomize(m)
    inputs = {"x": torch.randn(2, 3, 4), "h0": torch.randn(4, 2, 5) * 0.5}
    if kind == "lstm":
        inputs["c0"] = torch.randn(4, 2, 5) * 0.5

        def fwd(m, i):
            y, (h, c) = m(i["x"], (i["h0"], i["c0"]))
            return {"y": y, "h_n": h, "c_n": c}
    else:
        def fwd(m, i):
            y, h = m(i["x"], i["h0"])
            return {"y": y, "h_n": h}
    module_fixture(kind, m, inputs, fwd, cfg,
                   "x: [B=2, T=3, 4]; h0/c0/h_n/c_n: [layers*2, B, 5] (layer-major, forward then reverse); "
                   "y: [B, T, 2*5] (forward | reverse)")


def rnn_lengths(kind):
    """Variable-length batch through pack_padded_sequence: what an encoder over padded
    sentences computes. Outputs past a sequence's length are zero; h_n / c_n are the states at
    each sequence's last valid step (the reverse direction starts there)."""
    torch.manual_seed(14 if kind == "gru" else 15)
    cfg = {"input_size": 4, "hidden_size": 5, "num_layers": 2, "bidirectional": True, "batch_first": True}
    m = (nn.GRU if kind == "gru" else nn.LSTM)(**cfg)
    randomize(m)
    lengths = torch.tensor([4, 2, 3])
    inputs = {"x": torch.randn(3, 4, 4), "lengths": lengths}

    def fwd(m, i):
        packed = nn.utils.rnn.pack_padded_sequence(i["x"], i["lengths"], batch_first=True, enforce_sorted=False)
        out, state = m(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=4)
        if kind == "lstm":
            return {"y": y, "h_n": state[0], "c_n": state[1]}
        return {"y": y, "h_n": state}
    module_fixture(kind + "_lengths", m, inputs, fwd, cfg,
                   "x: [B=3, T=4, 4] with lengths [4, 2, 3] (I32, unsorted), zero initial state; "
                   "y: [B, T, 2*5], zero where t >= length; h_n/c_n: [layers*2, B, 5] at each sequence's end")


def mha(variant):
    torch.manual_seed(6 if variant == "mha" else 7)
    cfg = {"embed_dim": 8, "num_heads": 2, "batch_first": True, "dropout": 0.0, "bias": True}
    kdim = vdim = 8
    if variant == "mha_kvdim":
        cfg.update(kdim=6, vdim=5)
        kdim, vdim = 6, 5
    m = nn.MultiheadAttention(**cfg)
    randomize(m)
    nq, nk = 3, 4
    key_padding_mask = torch.tensor([[False] * 4, [False, False, False, True]])
    attn_mask = torch.ones(nq, nk, dtype=torch.bool).triu(diagonal=2)  # query i sees keys <= i+1
    inputs = {"query": torch.randn(2, nq, 8), "key": torch.randn(2, nk, kdim), "value": torch.randn(2, nk, vdim),
              "key_padding_mask": key_padding_mask, "attn_mask": attn_mask}

    def fwd(m, i):
        y, w = m(i["query"], i["key"], i["value"], key_padding_mask=i["key_padding_mask"],
                 attn_mask=i["attn_mask"], need_weights=True, average_attn_weights=True)
        return {"y": y, "attn_weights": w}
    module_fixture(variant, m, inputs, fwd, cfg,
                   "masks are I32, 1 = masked (PyTorch bool True): key_padding_mask [B, Nk], attn_mask [Nq, Nk]; "
                   "attn_weights [B, Nq, Nk] averaged over heads, not in the loss", grad_outputs=["y"])


def encoder_layer(norm_first, activation):
    torch.manual_seed(8 + 2 * int(norm_first) + int(activation == "gelu"))
    cfg = {"d_model": 8, "nhead": 2, "dim_feedforward": 16, "dropout": 0.0, "activation": activation,
           "batch_first": True, "norm_first": norm_first, "layer_norm_eps": 1e-5}
    m = nn.TransformerEncoderLayer(**cfg)
    randomize(m, 0.3)
    inputs = {"src": torch.randn(2, 4, 8), "src_key_padding_mask": torch.tensor([[False] * 4, [False, False, True, True]])}
    name = "encoder_layer_" + ("prenorm" if norm_first else "postnorm") + "_" + activation
    module_fixture(name, m, inputs,
                   lambda m, i: {"y": m(i["src"], src_key_padding_mask=i["src_key_padding_mask"])}, cfg,
                   "src_key_padding_mask [B, N] I32, 1 = padding; outputs at padded positions are included")


def decoder_layer(norm_first, activation):
    torch.manual_seed(20 + 2 * int(norm_first) + int(activation == "gelu"))
    cfg = {"d_model": 8, "nhead": 2, "dim_feedforward": 16, "dropout": 0.0, "activation": activation,
           "batch_first": True, "norm_first": norm_first, "layer_norm_eps": 1e-5}
    m = nn.TransformerDecoderLayer(**cfg)
    randomize(m, 0.3)
    nt, nm = 3, 4
    inputs = {"tgt": torch.randn(2, nt, 8), "memory": torch.randn(2, nm, 8),
              "tgt_mask": torch.ones(nt, nt, dtype=torch.bool).triu(diagonal=1),
              "memory_key_padding_mask": torch.tensor([[False] * 4, [False, False, False, True]])}
    name = "decoder_layer_" + ("prenorm" if norm_first else "postnorm") + "_" + activation
    module_fixture(name, m, inputs,
                   lambda m, i: {"y": m(i["tgt"], i["memory"], tgt_mask=i["tgt_mask"],
                                        memory_key_padding_mask=i["memory_key_padding_mask"])}, cfg,
                   "tgt_mask [Nt, Nt] causal I32, 1 = masked; memory_key_padding_mask [B, Nm] I32, 1 = padding")


class Functional(nn.Module):
    """Wraps a parameterless function so that module_fixture can run it."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *a):
        return self.fn(*a)


def functionals():
    torch.manual_seed(30)
    x = torch.randn(3, 5) * 3
    module_fixture("softmax", Functional(lambda x: F.softmax(x, dim=-1)), {"x": x},
                   lambda m, i: {"y": m(i["x"])}, {"dim": -1}, "softmax over the last dim")
    module_fixture("log_softmax", Functional(lambda x: F.log_softmax(x, dim=-1)), {"x": x},
                   lambda m, i: {"y": m(i["x"])}, {"dim": -1}, "log_softmax over the last dim")
    torch.manual_seed(31)
    logits = torch.randn(6, 5) * 2
    target = torch.tensor([1, 0, 4, 2, 0, 3])
    for name, cfg in [("cross_entropy", {"ignore_index": 0, "label_smoothing": 0.1, "reduction": "mean"}),
                      ("cross_entropy_sum", {"ignore_index": 0, "label_smoothing": 0.0, "reduction": "sum"})]:
        module_fixture(name, Functional(lambda l, t, c=cfg: F.cross_entropy(l, t, **c)),
                       {"logits": logits, "target": target},
                       lambda m, i: {"loss": m(i["logits"], i["target"])}, cfg,
                       "logits [6, 5], target [6] I32; targets equal to ignore_index are skipped "
                       "(mean divides by the non-ignored count); loss is a 0-d tensor")


# ---------------------------------------------------------------- optimizers

def schedule_factor(sched, s):
    """lr multiplier for optimizer step s (0-based) — the formulas in include/attn/optim/lr_schedule.h."""
    kind = sched["type"]
    if kind == "constant":
        return 1.0
    w = sched["warmup"]
    if kind == "inverse_sqrt":
        return min((s + 1) / w, math.sqrt(w / (s + 1)))
    if kind == "cosine":
        if s < w:
            return (s + 1) / w
        progress = min(1.0, (s - w) / max(1, sched["total"] - w))
        r = sched["min_lr_ratio"]
        return r + (1 - r) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(kind)


def optimizer_fixture(name, make, cfg, sched, clip=None, steps=3):
    torch.manual_seed(40 + sum(map(ord, name)))
    params = {"w": nn.Parameter(torch.randn(3, 4)), "b": nn.Parameter(torch.randn(4))}
    tensors = {"param." + k: np32(p) for k, p in params.items()}
    opt = make(list(params.values()))
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: schedule_factor(sched, s))
    lrs, norms = [], []
    for step in range(steps):
        for k, p in params.items():
            g = torch.randn_like(p) * (1.0 + step)
            tensors["input.grad.step%d.%s" % (step, k)] = np32(g)
            p.grad = g.clone()
        if clip is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_(list(params.values()), clip)))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        lr_sched.step()
        for k, p in params.items():
            tensors["output.step%d.param.%s" % (step, k)] = np32(p)
    tensors["output.lr"] = np.array(lrs, np.float64)
    if clip is not None:
        tensors["output.grad_norm"] = np.array(norms, np.float32)
    for k, p in params.items():
        for sk, sv in opt.state[p].items():
            if torch.is_tensor(sv) and sv.dim() > 0:
                tensors["output.state.%s.%s" % (sk, k)] = np32(sv)
    full = dict(cfg, schedule=sched, clip_grad_norm=clip, steps=steps)
    write_safetensors(os.path.join(OUT, name + ".safetensors"), tensors,
                      metadata(full, "params w [3, 4], b [4]; at step s: grads input.grad.step<s>.*, "
                                     "clip (if configured), lr = output.lr[s] (F64), step; "
                                     "output.step<s>.param.* after the step; output.state.* after the last"))


def optimizers():
    sgd = {"type": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01, "nesterov": False}
    optimizer_fixture("optim_sgd_momentum",
                      lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
                      sgd, {"type": "constant"})
    nes = {"type": "sgd", "lr": 0.1, "momentum": 0.8, "dampening": 0.0, "weight_decay": 0.0, "nesterov": True}
    optimizer_fixture("optim_sgd_nesterov",
                      lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.8, nesterov=True),
                      nes, {"type": "cosine", "warmup": 1, "total": 3, "min_lr_ratio": 0.1})
    # eps large enough that putting it inside the sqrt or before the bias correction would show.
    adam = {"type": "adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-2, "weight_decay": 0.01}
    optimizer_fixture("optim_adam",
                      lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-2, weight_decay=0.01),
                      adam, {"type": "inverse_sqrt", "warmup": 2})
    adamw = {"type": "adamw", "lr": 0.02, "betas": [0.85, 0.99], "eps": 1e-3, "weight_decay": 0.1}
    optimizer_fixture("optim_adamw",
                      lambda p: torch.optim.AdamW(p, lr=0.02, betas=(0.85, 0.99), eps=1e-3, weight_decay=0.1),
                      adamw, {"type": "cosine", "warmup": 1, "total": 3, "min_lr_ratio": 0.0}, clip=1.0)


def schedules():
    scheds = {"constant": {"type": "constant"},
              "inverse_sqrt": {"type": "inverse_sqrt", "warmup": 4},
              "cosine": {"type": "cosine", "warmup": 3, "total": 10, "min_lr_ratio": 0.1}}
    tensors = {}
    for name, s in scheds.items():
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
        ls = torch.optim.lr_scheduler.LambdaLR(opt, lambda k, s=s: schedule_factor(s, k))
        lrs = []
        for _ in range(12):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            ls.step()
        tensors["output." + name] = np.array(lrs, np.float64)
    write_safetensors(os.path.join(OUT, "lr_schedules.safetensors"), tensors,
                      metadata({"base_lr": 0.5, "steps": 12, **{k: v for k, v in scheds.items()}},
                               "lr of optimizer steps 0..11 via torch LambdaLR"))


def clipping():
    for name, norm_type, max_norm in [("clip_grad_norm_l2", 2.0, 1.0), ("clip_grad_norm_inf", math.inf, 0.5),
                                      ("clip_grad_norm_noop", 2.0, 100.0)]:
        torch.manual_seed(60)
        params = {"w": nn.Parameter(torch.zeros(3, 4)), "b": nn.Parameter(torch.zeros(4))}
        tensors = {}
        for k, p in params.items():
            p.grad = torch.randn_like(p)
            tensors["input.grad." + k] = np32(p.grad)
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm, norm_type=norm_type)
        tensors["output.total_norm"] = np32(norm)
        for k, p in params.items():
            tensors["output.grad." + k] = np32(p.grad)
        write_safetensors(os.path.join(OUT, name + ".safetensors"), tensors,
                          metadata({"max_norm": max_norm, "norm_type": "inf" if math.isinf(norm_type) else norm_type},
                                   "torch.nn.utils.clip_grad_norm_ on grads of w [3, 4], b [4]"))


# ---------------------------------------------------------------- format cross-check

def dtypes():
    """Every dtype the C++ reader converts, with values it can recompute:
    v[i] = i - 3 for the first 6 elements (row-major), shape [2, 3]."""
    base = np.arange(6).reshape(2, 3) - 3
    tensors = {
        "f64": base.astype(np.float64) * 0.5, "f32": base.astype(np.float32) * 0.5,
        "f16": base.astype(np.float16) * 0.5, "bf16": BF16(torch.tensor(base, dtype=torch.float32) * 0.5),
        "i64": base.astype(np.int64) * 1000000, "i32": base.astype(np.int32), "i16": base.astype(np.int16),
        "i8": base.astype(np.int8), "u8": (base + 3).astype(np.uint8), "bool": (base % 2 == 0),
        "scalar": np.array(2.5, np.float32), "empty": np.zeros((0, 3), np.float32),
    }
    write_safetensors(os.path.join(OUT, "safetensors_dtypes.safetensors"), tensors,
                      metadata({"base": "arange(6).reshape(2, 3) - 3"},
                               "f*: base*0.5; i64: base*1e6; i32/i16/i8: base; u8: base+3; bool: base even; "
                               "scalar: 2.5 (shape []); empty: [0, 3]; unicode check: \u00e9"))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_default_dtype(torch.float32)
    linear()
    embedding()
    layer_norm()
    conv1d()
    rnn("gru")
    rnn("lstm")
    rnn_lengths("gru")
    rnn_lengths("lstm")
    mha("mha")
    mha("mha_kvdim")
    for nf in (False, True):
        for act in ("relu", "gelu"):
            encoder_layer(nf, act)
            decoder_layer(nf, act)
    functionals()
    optimizers()
    schedules()
    clipping()
    dtypes()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT) if f.endswith(".safetensors"))
    print("wrote %s (%d bytes of .safetensors)" % (OUT, total), file=sys.stderr)


if __name__ == "__main__":
    main()
