#!/usr/bin/env python3
"""Runs the PyTorch peer (../shared/peers/torch_g2p.py) with its training matrix products in
bf16: torch.autocast on the CPU (bf16 inputs, f32 accumulation; PyTorch's own choice of which
ops run in bf16), the like-for-like counterpart of `attn train g2p --matmul bf16`. The peer
script has no such option, so this imports it and wraps its model's forward() (what its
training loop calls) in autocast, as PyTorch's documentation prescribes: autocast around the
forward pass only, logits back to f32 for the loss, backward and optimizer step outside it.
Dev / test decoding (the model's encode / decode, not forward) stays in f32, as attn's.
Arguments after the script's path go to the peer unchanged.

(The first version ran the peer's whole main() inside one autocast region. Autocast caches
the bf16 copy of each weight until the outermost region exits, so every step after the
first multiplied by the initial weights: the loss still fell through the f32 parts, the
decoder never learned (dev WER 100 %), and the bf16 casts of the weights were skipped.)

    /usr/bin/python3 bench/peer_g2p_autocast.py ../shared/peers/torch_g2p.py --train-minutes 4 ...
"""
import importlib.util
import sys

import torch

if len(sys.argv) < 2:
    sys.exit("usage: peer_g2p_autocast.py PEER_SCRIPT [peer arguments...]")
peer = sys.argv[1]
sys.argv = [peer] + sys.argv[2:]
spec = importlib.util.spec_from_file_location("torch_g2p_peer", peer)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)  # defines the peer's functions; its main() runs below

forward = mod.G2PTransformer.forward


def forward_autocast(self, *args, **kwargs):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = forward(self, *args, **kwargs)
    return out.float()


mod.G2PTransformer.forward = forward_autocast
mod.main()
