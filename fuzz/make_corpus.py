#!/usr/bin/python3
"""Writes the small seed corpora under fuzz/corpus/<target>/ (committed; rerun to refresh).
Valid files of every format plus a few near-misses; the fuzzer mutates from there.
Run with /usr/bin/python3 (needs numpy)."""
import io, json, os, struct
import numpy as np

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def npy(a, version=None):
    b = io.BytesIO()
    if version is None:
        np.save(b, a)
    else:
        np.lib.format.write_array(b, a, version=version)
    return b.getvalue()


# ---- npy
put("npy", "f4_2x3", npy(np.arange(6, dtype="<f4").reshape(2, 3)))
put("npy", "f8_scalar", npy(np.array(3.5, dtype="<f8")))
put("npy", "i8_4", npy(np.array([1, -2, 3, 2**40], dtype="<i8")))
put("npy", "u1_2x2", npy(np.array([[0, 255], [7, 8]], dtype="u1")))
put("npy", "b1_3", npy(np.array([True, False, True])))
put("npy", "f4_v2", npy(np.ones((1, 2, 2), dtype="<f4"), version=(2, 0)))
put("npy", "f4_empty", npy(np.zeros((0, 3), dtype="<f4")))
put("npy", "fortran", npy(np.asfortranarray(np.ones((2, 2), dtype="<f4"))))
put("npy", "big_endian", npy(np.ones(2, dtype=">f4")))


# ---- safetensors (and checkpoints, which are safetensors with attn metadata)
def safetensors(tensors, metadata=None):
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, a in tensors:
        dt = {"float32": "F32", "int32": "I32", "float64": "F64", "uint16": "BF16"}[str(a.dtype)]
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


f32 = lambda *s: np.arange(int(np.prod(s)), dtype=np.float32).reshape(s) / 8
put("safetensors", "two", safetensors([("a", f32(2, 3)), ("b", np.array([1, 2], dtype=np.int32))], {"k": "v"}))
put("safetensors", "bf16", safetensors([("h", np.array([0x3F80, 0x4000], dtype=np.uint16))]))
put("safetensors", "f64", safetensors([("d", np.array([1.5], dtype=np.float64))]))
put("safetensors", "scalar", safetensors([("s", np.array(2.0, dtype=np.float32))]))


def checkpoint(step=3, with_optim=True, extra=None, w_shape=(2, 3)):
    t = [("w", f32(*w_shape)), ("b", f32(3))]
    md = {"format": "attn.checkpoint.v1", "step": str(step), "epoch": "1", "rng_seed": "42",
          "rng_counter": "17", "meta": json.dumps({"model": "tiny", "d": 3})}
    if with_optim:
        md["optimizer"] = json.dumps({"type": "adam", "scalars": {
            "lr": 0.001, "step_count": step, "param_steps": {"w": step, "b": step},
            "hyper": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}}})
        for kind in ("exp_avg", "exp_avg_sq"):
            t += [(f"optim.{kind}.w", f32(2, 3) / 100), (f"optim.{kind}.b", f32(3) / 100)]
    t += extra or []
    return safetensors(t, md)


put("checkpoint", "adam", checkpoint())
put("checkpoint", "no_optim", checkpoint(with_optim=False))
put("checkpoint", "plain_state_dict", safetensors([("w", f32(2, 3)), ("b", f32(3))]))
put("checkpoint", "wrong_shape", checkpoint(w_shape=(3, 2)))
put("checkpoint", "unexpected", checkpoint(extra=[("c", f32(1))]))

# ---- CMUdict: first byte = options (bit 0 keep_stress, 1 strict, 2 tsv), then the file
here = os.path.dirname(os.path.abspath(__file__))
for name, sel in (("cmudict_sample.txt", 0), ("cmudict_sample.tsv", 4)):
    with open(os.path.join(here, "..", "tests", "data", "testdata", name), "rb") as f:
        text = f.read()
    put("cmudict", name, bytes([sel]) + text)
    put("cmudict", name + ".stress_strict", bytes([sel | 3]) + text)
put("cmudict", "tiny", b"\x00;;; comment\nHELLO  HH AH0 L OW1\nHELLO(1)  HH EH0 L OW1\nX\n\xc3\xa9T  EY1\n")

# ---- vocabulary JSON
voc = lambda unk, syms: json.dumps({"format": "attn-vocabulary", "version": 1, "unk": unk, "symbols": syms})
put("vocabulary", "chars", voc(False, ["<pad>", "<bos>", "<eos>", "a", "b", "'"]))
put("vocabulary", "unk", voc(True, ["<pad>", "<bos>", "<eos>", "<unk>", "AH", "EY"]))
put("vocabulary", "dup", voc(False, ["<pad>", "<bos>", "<eos>", "a", "a"]))
put("vocabulary", "bad_version", '{"format": "attn-vocabulary", "version": 2, "unk": false, "symbols": []}')

# ---- attend: raw bytes read by FuzzedDataProvider; a few fixed patterns as starting points
rng = np.random.default_rng(0)
for i in range(8):
    put("attend", f"random{i}", rng.integers(0, 256, size=64 + 48 * i, dtype=np.uint8).tobytes())
put("attend", "zeros", bytes(200))
put("attend", "ones", b"\x01" * 200)
