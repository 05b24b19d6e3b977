"""Text-only ceiling of a text-locked default model: how far one unseen wording per class can go in MiniLM's space.

No images at all: 10 unit "image" prototypes are fitted in the frozen text tower's space with the alignment
loss (UniCL, fixed scale) against the training captions (emoji captions as negatives), then the development
wordings (``EVAL_WORDINGS``) are scored the way ``benchmarks/align_eval.py`` scores images: one wording per
class (mean over draws) and all wordings ensembled, with the per-wording recall. If this ideal "image" side
cannot recognise a wording, no image tower aligned to the frozen text tower will. It also prints each
failing wording's nearest training wordings.

    python benchmarks/align_text_proxy.py [--work DIR]   # caches text embeddings in DIR (default: a temp dir)
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from snapsight.data.fashion_mnist import FASHION_MNIST_CLASSES as CL
from snapsight.default_model import wordings
from snapsight.models import default as default_asset
from snapsight.zeroshot.prompts import TEMPLATE_SETS

CACHE = Path(tempfile.gettempdir()) / "snapsight-text-proxy-cache.pt"
_cache: dict = {}
_model = None


def enc(texts):
    global _model
    new = [t for t in dict.fromkeys(texts) if t not in _cache]
    if new:
        if _model is None:
            from snapsight.artifacts.clip_dir import load_clip_dir
            m, _, tok = load_clip_dir(default_asset.default_model_dir())
            _model = (m, tok)
        m, tok = _model
        with torch.no_grad():
            for i in range(0, len(new), 256):
                ch = new[i:i+256]
                e = F.normalize(m.encode_text(tok(ch)).float(), dim=-1)
                _cache.update(zip(ch, e))
        torch.save(_cache, CACHE)
    return torch.stack([_cache[t] for t in texts])

def train_set(wordings, templates, emoji=True):
    caps, y = [], []
    for c, name in enumerate(CL):
        for w in wordings[name]:
            for t in templates:
                caps.append(t.format(w)); y.append(c)
    neg = []
    if emoji:
        tr, _ = wordings.training_emoji()
        neg = [t.format(n) for e in tr for n in e.names[:1] for t in wordings.EMOJI_TEMPLATES]
    return caps, np.array(y), neg

def fit(caps, y, neg, scale=16.7, steps=300, lr=0.05, text_map=None, wd_id=1.0, seed=0):
    torch.manual_seed(seed)
    T = enc(caps); N = enc(neg) if neg else torch.zeros(0, T.shape[1])
    yt = torch.tensor(y)
    P = torch.nn.Parameter(F.normalize(torch.stack([T[yt == c].mean(0) for c in range(10)]), dim=-1).clone())
    params = [P]
    W = None
    if text_map == "linear":
        W = torch.nn.Parameter(torch.eye(T.shape[1])); params.append(W)
    opt = torch.optim.Adam(params, lr=lr)
    allT = torch.cat([T, N])
    for s in range(steps):
        tt = F.normalize(allT @ W, dim=-1) if W is not None else allT
        p = F.normalize(P, dim=-1)
        logits = scale * p @ tt.T  # (10, texts)
        tgt = torch.zeros_like(logits); tgt[yt, torch.arange(len(yt))] = 1; tgt /= tgt.sum(1, keepdim=True)
        li = -(tgt * F.log_softmax(logits, 1)).sum(1).mean()
        lt = F.cross_entropy(scale * tt[:len(yt)] @ p.T, yt)
        loss = 0.5 * (li + lt)
        if W is not None:
            loss = loss + wd_id * ((W - torch.eye(W.shape[0])) ** 2).sum()
        opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        return F.normalize(P, dim=-1).detach(), (W.detach() if W is not None else None)

def wording_emb(words, templates, W=None):
    out = []
    for w in words:
        e = enc([t.format(w) for t in templates])
        if W is not None: e = F.normalize(e @ W, dim=-1)
        out.append(F.normalize(e.mean(0), dim=-1))
    return torch.stack(out)

def score(P, W=None, heldout=None, templates=None, draws=2000, seed=0):
    heldout = heldout or wordings.EVAL_WORDINGS
    templates = templates or TEMPLATE_SETS["default"]
    flat = [(c, w) for c, n in enumerate(CL) for w in heldout[n]]
    E = wording_emb([w for _, w in flat], templates, W)
    S = (P @ E.T).numpy()  # (10 protos, wordings)
    starts = np.cumsum([0] + [len(heldout[n]) for n in CL])
    rng = np.random.default_rng(seed)
    accs = []
    for _ in range(draws):
        cols = [starts[c] + rng.integers(0, starts[c+1]-starts[c]) for c in range(10)]
        accs.append(float((S[:, cols].argmax(1) == np.arange(10)).mean()))
    # ensemble: class emb = mean over its wordings
    Ens = F.normalize(torch.stack([E[starts[c]:starts[c+1]].mean(0) for c in range(10)]), dim=-1)
    ens = float(((P @ Ens.T).argmax(1) == torch.arange(10)).float().mean())
    # per-wording: fraction of draws (other classes random) where this wording's class is right
    rec = {}
    for j, (c, w) in enumerate(flat):
        ok = []
        for _ in range(200):
            cols = [starts[k] + rng.integers(0, starts[k+1]-starts[k]) for k in range(10)]; cols[c] = j
            ok.append(S[c, cols].argmax() == c)
        rec[f"{CL[c]}: {w}"] = float(np.mean(ok))
    return {"single": float(np.mean(accs)), "ens": ens, "rec": rec}

def main() -> None:
    global CACHE, _cache
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=None, help="folder for the text-embedding cache")
    args = ap.parse_args()
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        CACHE = Path(args.work) / "text_embeddings.pt"
    _cache = torch.load(CACHE, weights_only=True) if CACHE.exists() else {}
    t0 = time.time()
    caps, y, neg = train_set(wordings.TRAIN_WORDINGS, wordings.FMNIST_TEMPLATES)
    P, _ = fit(caps, y, neg)
    r = score(P)
    print(f"text-only prototypes, development wordings: one per class {100 * r['single']:.1f}%, "
          f"all ensembled {100 * r['ens']:.1f}% ({time.time() - t0:.0f} s)")
    dead = sorted(r["rec"].items(), key=lambda kv: kv[1])[:6]
    print("weakest wordings (recall):", ", ".join(f"{k} {100 * v:.0f}%" for k, v in dead))
    tw = [(c, w) for c in CL for w in wordings.TRAIN_WORDINGS[c]]
    T = enc([w for _, w in tw])
    for key, _ in dead:
        c, w = key.split(": ", 1)
        s = (T @ enc([w])[0]).numpy()
        near = ", ".join(f"{tw[i][1]} ({tw[i][0]}) {s[i]:.2f}" for i in np.argsort(-s)[:4])
        print(f"  {w!r} ({c}) is nearest to: {near}")


if __name__ == "__main__":
    main()
