#!/usr/bin/python3
"""Side-by-side timing of `attn bench attention --json` and PyTorch on the same shapes.

PyTorch 1.13 has no F.scaled_dot_product_attention, so this runs the math formulation torch
users write: softmax(q kᵀ · scale + mask) v (grouped-query heads by repeat_interleave), forward
under no_grad and backward through autograd, with torch.set_num_threads(T) equal to attn's
--threads. Times are medians over --reps runs after a warm-up. Shapes whose score matrices
would not fit comfortably in memory are skipped for torch (noted).

    /usr/bin/python3 bench/compare_torch.py --attn build/attn --threads 2 --backward --quick
    /usr/bin/python3 bench/compare_torch.py --threads 1 --backward --shape 1,8,8,2048,2048,64 --causal
"""
import argparse
import json
import math
import statistics
import subprocess
import sys
import time

import torch


def torch_attention(q, k, v, causal):
    group = q.shape[1] // k.shape[1]
    if group > 1:
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
    s = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        nq, nk = s.shape[-2], s.shape[-1]
        mask = torch.ones(nq, nk, dtype=torch.bool).triu(1)
        s = s.masked_fill(mask, float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), v)


def median_ms(fn, reps, max_seconds=10.0):
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    n = max(1, min(reps, int(max_seconds / max(first, 1e-9))))
    ms = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ms)


def torch_row(shape, causal, pass_, reps, dtype):
    B, Hq, Hkv, Nq, Nk, D = shape
    score_bytes = B * Hq * Nq * Nk * 4
    if score_bytes > (2.2e9 if pass_ != "backward" else 1.1e9):
        return None, "skipped: score matrices too large for memory"
    dt = torch.bfloat16 if dtype == "bf16" else torch.float32
    g = torch.Generator().manual_seed(0)
    q = torch.rand(B, Hq, Nq, D, generator=g).mul_(2).sub_(1).to(dt)
    k = torch.rand(B, Hkv, Nk, D, generator=g).mul_(2).sub_(1).to(dt)
    v = torch.rand(B, Hkv, Nk, D, generator=g).mul_(2).sub_(1).to(dt)
    if pass_ != "backward":
        def fwd():
            with torch.no_grad():
                torch_attention(q, k, v, causal)
        return median_ms(fwd, reps), ""
    q.requires_grad_(True)
    k.requires_grad_(True)
    v.requires_grad_(True)
    dout = torch.rand(B, Hq, Nq, D, generator=g).to(dt)
    times = []

    def bwd():
        q.grad = k.grad = v.grad = None
        out = torch_attention(q, k, v, causal)
        t = time.perf_counter()
        out.backward(dout)
        times.append((time.perf_counter() - t) * 1e3)

    median_ms(bwd, reps)  # runs forward + backward; only the backward part is kept
    return statistics.median(times[1:] if len(times) > 1 else times), ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attn", default="build/attn", help="path of the attn executable")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shape", action="append", default=[], help="B,Hq,Hkv,Nq,Nk,D (repeatable)")
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--backward", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()

    cmd = [a.attn, "--threads", str(a.threads), "bench", "attention", "--json", "--reps", str(a.reps),
           "--dtype", a.dtype]
    for s in a.shape:
        cmd += ["--shape", s]
    if a.causal:
        cmd.append("--causal")
    if a.backward:
        cmd.append("--backward")
    if a.quick:
        cmd.append("--quick")
    torch.set_num_threads(a.threads)
    print("attn:  " + " ".join(cmd))
    print(f"torch: {torch.__version__}, {torch.get_num_threads()} threads, math formulation")
    print(f"{'B,Hq,Hkv,Nq,Nk,D':<24} {'causal':<6} {'pass':<8} {'attn_ms':>10} {'torch_ms':>10} "
          f"{'speedup':>8} {'attn_GF/s':>10} {'torch_GF/s':>10} {'naive_ms':>10}  note")
    # attn finishes every shape before torch starts: timing torch while attn still runs its next
    # shapes (reading attn's output as it streams) would put both on the same cores at once.
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        return proc.returncode
    for line in proc.stdout.splitlines():
        r = json.loads(line)
        shape = r["shape"]
        B, Hq, Hkv, Nq, Nk, D = shape
        flops = 4.0 * B * Hq * Nq * Nk * D * (0.5 if r["causal"] else 1.0) * (2.5 if r["pass"] == "backward" else 1.0)
        tms, note = torch_row(shape, r["causal"], r["pass"], a.reps, a.dtype)
        ams = r["ms"]
        note = "; ".join(x for x in [r.get("note", ""), note, "attn backend " + r["backend"]] if x)
        fmt = lambda x, f: (f % x) if x is not None else "-"
        speed = (tms / ams) if (tms and ams) else None
        print(f"{','.join(map(str, shape)):<24} {str(r['causal']):<6} {r['pass']:<8} {fmt(ams, '%.3f'):>10} "
              f"{fmt(tms, '%.3f'):>10} {fmt(speed, '%.2fx'):>8} {fmt(r['gflops'], '%.1f'):>10} "
              f"{fmt(flops / (tms * 1e-3) * 1e-9 if tms else None, '%.1f'):>10} "
              f"{fmt(r['naive_ms'], '%.3f'):>10}  {note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
