#!/usr/bin/python3
"""Checks attn's CMUdict filtering and split against the PyTorch G2P reference.

Imports load_cmudict/split_words from torch_g2p.py (needs /usr/bin/python3, which has
torch), runs `attn cmudict --out-dir` on the same file, and compares counts and the
test/dev/train word lists word for word. Exit status 0 when everything matches.

    /usr/bin/python3 tools/check_cmudict_split.py [--attn build/attn] [--dict data/cmudict/dict.txt]
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attn", default=os.path.join(REPO, "build", "attn"))
    ap.add_argument("--dict", default=os.path.join(REPO, "data", "cmudict", "dict.txt"))
    ap.add_argument("--reference", default="/work/shared/peers/torch_g2p.py")
    args = ap.parse_args()

    spec = importlib.util.spec_from_file_location("torch_g2p", args.reference)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    prons, st = ref.load_cmudict(args.dict)
    test_w, dev_w, train_w = ref.split_words(prons)

    ok = True
    for path in (args.dict, os.path.join(os.path.dirname(args.dict), "cmudict.tsv")):
        if not os.path.exists(path):
            print("skip: %s absent" % path)
            continue
        with tempfile.TemporaryDirectory() as out:
            res = subprocess.run([args.attn, "cmudict", path, "--json", "--out-dir", out],
                                 check=True, capture_output=True, text=True)
            got = json.loads(res.stdout)
            lists = {}
            for name in ("test", "dev", "train"):
                with open(os.path.join(out, name + ".txt")) as f:
                    lists[name] = f.read().split("\n")[:-1]
            with open(os.path.join(out, "lexicon.tsv")) as f:
                lexicon = [tuple(l.split("\t")) for l in f.read().split("\n")[:-1]]
        want = dict(kept_lines=st["kept_lines"], skipped_nonascii=st["skipped_nonascii"],
                    skipped_pattern=st["skipped_pattern"], dup_prons_after_destress=st["dup_after_destress"],
                    words=len(prons), prons=sum(len(v) for v in prons.values()),
                    test_words=len(test_w), dev_words=len(dev_w), train_words=len(train_w),
                    train_prons=sum(len(prons[w]) for w in train_w))
        if path == args.dict:
            want["lines"] = st["lines"]
        # The reference counts words without phonemes under skipped_pattern; attn separately.
        got["skipped_pattern"] = got["skipped_pattern"] + got["malformed"]
        for k, v in want.items():
            match = got[k] == v
            ok &= match
            print("%-28s reference %-8s attn %-8s %s" % (k, v, got[k], "ok" if match else "MISMATCH"))
        for name, words in (("test", test_w), ("dev", dev_w), ("train", train_w)):
            same = lists[name] == words
            ok &= same
            print("%s: %s word list (%d words) %s" % (os.path.basename(path), name, len(words),
                                                     "identical" if same else "DIFFERS"))
        # Pronunciations too: every (word, pronunciation) in the reference's order.
        want_lex = [(w, " ".join(r)) for w, rs in prons.items() for r in rs]
        same = lexicon == want_lex
        ok &= same
        print("%s: lexicon (%d pronunciations, file order) %s" % (os.path.basename(path), len(want_lex),
                                                                  "identical" if same else "DIFFERS"))
    print("RESULT:", "all match" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
