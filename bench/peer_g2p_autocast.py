#!/usr/bin/env python3
"""Runs the PyTorch peer (../shared/peers/torch_g2p.py) with its training matrix products in
bf16: torch.autocast on the CPU (bf16 inputs, f32 accumulation; PyTorch's own choice of which
ops run in bf16), the like-for-like counterpart of `attn train g2p --matmul bf16`. The peer
script has no such option, so this imports it, runs its main() under autocast, and runs its
dev / test evaluation with autocast off (f32 decoding, as attn's). Arguments after the
script's path go to the peer unchanged.

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

evaluate = mod.evaluate


def evaluate_f32(*args, **kwargs):
    with torch.autocast("cpu", enabled=False):
        return evaluate(*args, **kwargs)


mod.evaluate = evaluate_f32
with torch.autocast("cpu", dtype=torch.bfloat16):
    mod.main()
