#!/usr/bin/python3
"""PyTorch 1.13 twin of `attn bench train`: one training step of a Transformer encoder-decoder.

The model is the one a plain PyTorch user writes (as /work/shared/peers/torch_g2p.py's
G2PTransformer): nn.Embedding (padding_idx 0) * sqrt(d) + sinusoidal positions, dropout,
nn.Transformer(batch_first=True) with causal and key-padding masks, output nn.Linear; loss
CrossEntropyLoss(ignore_index=0, label_smoothing=0.1); Adam(0.9, 0.98, eps 1e-9). The batch
is the same formula as attn's (no padding): src[b, i] = 1 + (7 b + 13 i + 3) mod (V - 1),
tgt[b, i] = 1 + (5 b + 11 i + 1) mod (V - 1); decoder input = BOS (1) + tgt[:, :-1].

Prints one JSON object: threads, steps, ms_per_step, tokens_per_step (source + target
tokens), tokens_per_s, torch version. With --bf16 it also times the same step (a fresh model,
same seed) under torch.autocast("cpu", dtype=torch.bfloat16) — the like-for-like twin of
`attn bench train --matmul bf16` — and adds bf16_ms_per_step, bf16_tokens_per_s, bf16_loss.
The OpenMP wait policy (OMP_WAIT_POLICY, GOMP_SPINCOUNT) is the environment's, the one attn
ran under: `attn bench train` starts this script with its own environment, so both sides wait
alike (libgomp's default when neither is set: spin a few ms, then sleep).

    /usr/bin/python3 bench/compare_torch_train.py --threads 2 --steps 10
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn

PAD, BOS = 0, 1


class SinusoidalPE(nn.Module):
    def __init__(self, d, max_len=256):
        super().__init__()
        pe = torch.zeros(max_len, d)
        pos = torch.arange(max_len).unsqueeze(1).float()
        div = torch.exp(torch.arange(0, d, 2).float() * (-math.log(10000.0) / d))
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe)

    def forward(self, x):
        return x + self.pe[: x.size(1)].unsqueeze(0)


class Seq2SeqTransformer(nn.Module):
    def __init__(self, n_src, n_tgt, d, heads, enc, dec, ffn, dropout, norm_first):
        super().__init__()
        self.d = d
        self.src_emb = nn.Embedding(n_src, d, padding_idx=PAD)
        self.tgt_emb = nn.Embedding(n_tgt, d, padding_idx=PAD)
        self.pe = SinusoidalPE(d)
        self.drop = nn.Dropout(dropout)
        self.tf = nn.Transformer(d_model=d, nhead=heads, num_encoder_layers=enc, num_decoder_layers=dec,
                                 dim_feedforward=ffn, dropout=dropout, batch_first=True, norm_first=norm_first)
        self.out = nn.Linear(d, n_tgt)
        for emb in (self.src_emb, self.tgt_emb):
            nn.init.normal_(emb.weight, mean=0.0, std=d ** -0.5)
            with torch.no_grad():
                emb.weight[PAD].zero_()

    def forward(self, src, tgt_in):
        pad_mask = src.eq(PAD)
        x = self.drop(self.pe(self.src_emb(src) * math.sqrt(self.d)))
        memory = self.tf.encoder(x, src_key_padding_mask=pad_mask)
        T = tgt_in.size(1)
        causal = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)
        y = self.drop(self.pe(self.tgt_emb(tgt_in) * math.sqrt(self.d)))
        h = self.tf.decoder(y, memory, tgt_mask=causal, tgt_key_padding_mask=tgt_in.eq(PAD),
                            memory_key_padding_mask=pad_mask)
        return self.out(h)


def make_batch(B, S, T, V):
    b = torch.arange(B).unsqueeze(1)
    src = 1 + (7 * b + 13 * torch.arange(S).unsqueeze(0) + 3) % (V - 1)
    tgt = 1 + (5 * b + 11 * torch.arange(T).unsqueeze(0) + 1) % (V - 1)
    tgt_in = torch.cat([torch.full((B, 1), BOS), tgt[:, :-1]], 1)
    return src.long(), tgt_in.long(), tgt.long()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--src-len", type=int, default=32)
    ap.add_argument("--tgt-len", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--encoder-layers", type=int, default=4)
    ap.add_argument("--decoder-layers", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=1024)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--post-norm", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bf16", action="store_true", help="also time the step under torch.autocast(bf16)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    tokens = a.batch * (a.src_len + a.tgt_len)
    src, tgt_in, tgt_out = make_batch(a.batch, a.src_len, a.tgt_len, a.vocab)

    def time_steps(bf16):
        """Mean seconds per step after warm-up, and the last loss."""
        torch.manual_seed(a.seed)
        model = Seq2SeqTransformer(a.vocab, a.vocab, a.d_model, a.heads, a.encoder_layers, a.decoder_layers,
                                   a.ffn, a.dropout, not a.post_norm)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
        crit = nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.1)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(src, tgt_in)
                loss = crit(logits.reshape(-1, logits.size(-1)).float(), tgt_out.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.item()

        for _ in range(a.warmup):
            step()
        t0 = time.perf_counter()
        loss = 0.0
        for _ in range(a.steps):
            loss = step()
        return (time.perf_counter() - t0) / a.steps, loss

    dt, loss = time_steps(False)
    out = dict(torch=torch.__version__, threads=torch.get_num_threads(), steps=a.steps, ms_per_step=dt * 1e3,
               tokens_per_step=tokens, tokens_per_s=tokens / dt, loss=loss,
               omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"), gomp_spincount=os.environ.get("GOMP_SPINCOUNT"))
    if a.bf16:
        dt16, loss16 = time_steps(True)
        out.update(bf16_ms_per_step=dt16 * 1e3, bf16_tokens_per_s=tokens / dt16, bf16_loss=loss16)
    print(json.dumps(out))

if __name__ == "__main__":
    main()
