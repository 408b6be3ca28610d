"""`bench/compare embed`: Quiver embedding throughput against its reference libraries.

One invocation, same machine, same inputs, same model files, 2 threads each:

  all-MiniLM-L6-v2  Quiver (`quiver bench embed`)          vs  sentence-transformers (PyTorch CPU)
                    Quiver --precision f32, bf16, int8     vs  onnxruntime on the model's ONNX
                                                               export, f32 and dynamic int8
  potion-base-8M    Quiver (static model)                  vs  model2vec

Each reduced precision is reported with its cost in quality: the cosine of its vectors to
Quiver f32's over the parity texts (onnxruntime int8: to onnxruntime f32's), min and mean.
`vs_onnxruntime` compares each Quiver precision with its natural peer (int8 with onnxruntime
int8, f32 and bf16 with onnxruntime f32).

Inputs (identical for every engine; built here once and handed to the peers as a JSON file, and
built the same way by `quiver bench embed`):
  long   the first 2,000 SciFact documents, `title + " " + text`
  short  all SciFact queries (1,109)
Batch size 32. Reported: sentences/s per engine, and `ratio_long` / `ratio_short` =
Quiver / peer (> 1 means Quiver is faster). A parity check embeds 64 of the inputs with both
engines and reports the minimum cosine.

Steps:
  1. `quiver models pull NAME` (sha256-verified cache) and `quiver models path NAME`: the peers
     load the very same directory;
  2. `quiver bench embed --model NAME --threads 2 --batch-size 32 --json`;
  3. the peer runs in a private virtualenv (${QUIVER_BENCH_EMBED_VENV:-~/.cache/quiver/bench-venv-embed},
     made on first use; torch from the PyTorch CPU index when reachable, else PyPI) with
     `torch.set_num_threads(2)` and OMP/MKL threads = 2.

The orchestrating part uses only the standard library; the `_peer` sub-command runs under the
venv's python. Peers never go into the Quiver binary.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from _common import REPO, CompareError, cached_venv, last_json, logger, mark_venv_ready, quiver_bin, run_checked

# Pinned peer stack (verified on CPython 3.11 / x86_64 Linux).
PEER_REQUIREMENTS = [
    "torch==2.15.0",
    "sentence-transformers==6.2.0",
    "model2vec==0.10.0",
    "onnxruntime==1.32.0",
    "onnx==1.23.2",
]
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
MODELS = [
    # (quiver model, peer name)
    ("all-MiniLM-L6-v2", "sentence-transformers"),
    ("potion-base-8M", "model2vec"),
]
PARITY_TEXTS = 64


log = logger("embed")


# ---------------------------------------------------------------- venv


def venv_dir():
    d = os.environ.get("QUIVER_BENCH_EMBED_VENV") or os.path.join("~", ".cache", "quiver", "bench-venv-embed")
    return os.path.abspath(os.path.expanduser(d))


def reachable(url, timeout=3.0):
    host = url.split("://", 1)[-1].split("/", 1)[0]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def ensure_venv():
    """Make (or reuse) the peer virtualenv and return its python."""
    d = venv_dir()
    py, ready = cached_venv(d, PEER_REQUIREMENTS, log)
    if ready:
        return py
    torch_req = [r for r in PEER_REQUIREMENTS if r.startswith("torch==")]
    if reachable(TORCH_CPU_INDEX):
        log(f"installing {torch_req[0]} from {TORCH_CPU_INDEX}")
        cmd = [py, "-m", "pip", "install", "-q", *torch_req, "--index-url", TORCH_CPU_INDEX]
        try:
            run_checked(cmd, "pip install torch (CPU index)")
        except CompareError as e:
            log(f"{e}; falling back to PyPI torch")
    else:
        log(f"{TORCH_CPU_INDEX} is unreachable; torch comes from PyPI (larger download)")
    log(f"installing {' '.join(PEER_REQUIREMENTS)} into {d} (a few minutes the first time)")
    run_checked([py, "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], "pip install")
    mark_venv_ready(d, PEER_REQUIREMENTS)
    return py


# ---------------------------------------------------------------- quiver


def run_stdout(cmd, what, stdin_text=None):
    log(f"running {' '.join(cmd)}")
    r = subprocess.run(cmd, input=stdin_text, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    if r.returncode != 0:
        raise CompareError(f"{what} failed (exit {r.returncode}): {' '.join(cmd)}")
    return r.stdout


# ---------------------------------------------------------------- inputs


def scifact_inputs(data, docs):
    """The same texts `quiver bench embed` builds: (first `docs` corpus docs, all queries)."""
    def read(path, limit, f):
        out = []
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if len(out) >= limit:
                    break
                if line.strip():
                    out.append(f(json.loads(line)))
        return out

    long = read(os.path.join(data, "corpus.jsonl"), docs,
                lambda v: f"{v.get('title') or ''} {v.get('text') or ''}")
    short = read(os.path.join(data, "queries.jsonl"), float("inf"), lambda v: v.get("text") or "")
    return long, short


# ---------------------------------------------------------------- peers (venv side)


def _peer(argv):
    """Runs under the venv python: time the reference library on the same inputs."""
    ap = argparse.ArgumentParser(prog="compare_embed.py _peer")
    ap.add_argument("--peer", required=True, choices=["sentence-transformers", "model2vec", "onnxruntime"])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--work", help="directory for the ONNX export (onnxruntime)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    with open(a.inputs, encoding="utf-8") as f:
        inputs = json.load(f)
    if a.peer == "onnxruntime":
        print(json.dumps(_onnxruntime_peer(a, inputs)))
        return 0
    if a.peer == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(a.model_dir, device="cpu")

        def encode(texts):
            return model.encode(texts, batch_size=a.batch_size, convert_to_numpy=True, show_progress_bar=False)
    else:
        from model2vec import StaticModel

        model = StaticModel.from_pretrained(a.model_dir)

        def encode(texts):
            return model.encode(texts, batch_size=a.batch_size, show_progress_bar=False, use_multiprocessing=False)

    result = {"engine": a.peer, "threads": a.threads, "batch_size": a.batch_size}
    with torch.inference_mode():
        result.update(_timed(encode, inputs, a.batch_size))
    print(json.dumps(result))
    return 0


def _timed(encode, inputs, batch_size):
    """A warm-up batch, then the long and short rates of `encode`, and its parity vectors."""
    import numpy as np

    encode(inputs["long"][:batch_size])
    r = {}
    for kind in ("long", "short"):
        texts = inputs[kind]
        t = time.perf_counter()
        out = encode(texts)
        secs = time.perf_counter() - t
        assert len(out) == len(texts)
        r[kind] = {"texts": len(texts), "seconds": secs, "sentences_per_s": len(texts) / secs}
    r["parity_vectors"] = np.asarray(encode(inputs["parity"]), dtype=np.float64).tolist()
    return r


def _onnx_export(model_dir, work):
    """The model's ONNX export (torch.onnx, opset 17, dynamic batch and length), run through
    onnxruntime's BERT optimizer (fused bias+GELU and skip+LayerNorm), and that model's dynamic
    int8 quantisation (`quantize_dynamic`, QInt8 weights): the way onnxruntime serves BERT."""
    import torch
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModel.from_pretrained(model_dir).eval()
    cfg = AutoConfig.from_pretrained(model_dir)

    class Body(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, mask, types):
            return self.m(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    enc = tok(["an export", "traced with two texts of unequal length"], padding=True, return_tensors="pt")
    raw, opt, q8 = (os.path.join(work, f) for f in ("model.onnx", "model.opt.onnx", "model.opt.int8.onnx"))
    t = time.perf_counter()
    torch.onnx.export(Body(base), tuple(enc[n] for n in names), raw, input_names=names,
                      output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                      dynamic_axes={n: {0: "batch", 1: "seq"} for n in names + ["last_hidden_state"]})
    om = optimizer.optimize_model(raw, model_type="bert", num_heads=cfg.num_attention_heads,
                                  hidden_size=cfg.hidden_size, opt_level=1)
    om.save_model_to_file(opt)
    # The fused operators (com.microsoft domain) defeat ONNX shape inference; their outputs are
    # f32, which is what DefaultTensorType tells the quantizer.
    quantize_dynamic(opt, q8, weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    fused = {k: v for k, v in om.get_fused_operator_statistics().items() if v}
    return tok, {"f32": opt, "int8": q8}, {"export_s": time.perf_counter() - t, "fused_ops": fused}


def _onnxruntime_peer(a, inputs):
    """onnxruntime on the model's ONNX export, f32 and dynamic int8: sentence-transformers'
    pipeline (length-sorted batches, padded per batch, mean pooling, normalise) around
    `InferenceSession.run` with `a.threads` intra-op threads."""
    import numpy as np
    import onnxruntime as ort

    with open(os.path.join(a.model_dir, "sentence_bert_config.json"), encoding="utf-8") as f:
        max_len = json.load(f).get("max_seq_length", 256)
    tok, paths, export = _onnx_export(a.model_dir, a.work)
    result = {"engine": "onnxruntime", "version": ort.__version__, "threads": a.threads,
              "batch_size": a.batch_size, "max_seq_length": max_len, **export}
    for precision, path in paths.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        wanted = {i.name for i in sess.get_inputs()}

        def encode(texts):
            order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
            out = [None] * len(texts)
            for s in range(0, len(texts), a.batch_size):
                idx = order[s:s + a.batch_size]
                enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_len,
                          return_tensors="np")
                feed = {k: v.astype(np.int64) for k, v in enc.items() if k in wanted}
                hidden = sess.run(None, feed)[0]
                mask = enc["attention_mask"][..., None].astype(np.float32)
                v = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
                v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
                for j, i in enumerate(idx):
                    out[i] = v[j]
            return np.stack(out)

        result[precision] = _timed(encode, inputs, a.batch_size)
    return result


def run_peer(py, peer, model_dir, inputs_path, threads, batch_size, work=None):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    cmd = [py, os.path.realpath(__file__), "_peer", "--peer", peer, "--model-dir", model_dir,
           "--inputs", inputs_path, "--threads", str(threads), "--batch-size", str(batch_size)]
    if work:
        cmd += ["--work", work]
    log(f"running {peer} ({threads} threads)")
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env=env)
    if r.returncode != 0:
        raise CompareError(f"{peer} failed (exit {r.returncode})")
    return last_json(r.stdout, peer)


def cosine(a, b):
    ab = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return ab / (na * nb) if na and nb else 0.0


# ---------------------------------------------------------------- main


def main(argv):
    if argv and argv[0] == "_peer":
        return _peer(argv[1:])
    ap = argparse.ArgumentParser(prog="bench/compare embed", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(REPO), "shared", "data", "scifact"),
                    help="BEIR SciFact directory (default: ../shared/data/scifact beside the repo)")
    ap.add_argument("--docs", type=int, default=2000, help="corpus documents for the long-text rate")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--models", default=",".join(m for m, _ in MODELS),
                    help="comma-separated subset of: " + ", ".join(m for m, _ in MODELS))
    ap.add_argument("--precisions", default="f32,bf16,int8",
                    help="Quiver precisions of the transformer model, f32 first (default: f32,bf16,int8)")
    ap.add_argument("--no-onnxruntime", dest="onnxruntime", action="store_false",
                    help="skip the onnxruntime peer (its ONNX export takes ~10 s)")
    a = ap.parse_args(argv)
    try:
        result = compare(a)
    except CompareError as e:
        print(f"bench/compare embed: {e}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(result))
    else:
        print(f"embedding throughput, {a.threads} threads, batch {a.batch_size} "
              f"(long: {result['inputs']['long']} SciFact docs, short: {result['inputs']['short']} queries)")
        for name, r in result["models"].items():
            q, p = r["quiver"], r["peer"]
            print(f"\n{name}: quiver vs {r['peer_name']}  (parity: min cosine {r['parity_min_cosine']:.6f})")
            for kind in ("long", "short"):
                print(f"  {kind:<5}  quiver {q[kind]['sentences_per_s']:>9.1f}/s   "
                      f"{r['peer_name']} {p[kind]['sentences_per_s']:>9.1f}/s   "
                      f"ratio_{kind} {r['ratio_' + kind]:.2f}")
            o = r.get("onnxruntime")
            for prec, res in r.get("precisions", {}).items():
                line = (f"  quiver {prec:<5} long {rate(res, 'long'):>7.1f}/s  short {rate(res, 'short'):>7.1f}/s"
                        f"  cosine to f32 min {res['min_cosine']:.5f} mean {res['mean_cosine']:.5f}")
                if o:
                    v = r["vs_onnxruntime"][prec]
                    line += f"  vs {v['vs']} {v['ratio_long']:.2f}x / {v['ratio_short']:.2f}x"
                print(line)
            if o:
                for prec in ("f32", "int8"):
                    res = o[prec]
                    ref = "quiver f32" if prec == "f32" else "onnxruntime f32"
                    print(f"  onnxruntime {prec:<5} long {rate(res, 'long'):>7.1f}/s  short {rate(res, 'short'):>7.1f}/s"
                          f"  cosine to {ref} min {res['min_cosine']:.5f} mean {res['mean_cosine']:.5f}")
        print(f"\nratio_long {result['ratio_long']:.2f}  ratio_short {result['ratio_short']:.2f}  "
              f"(all-MiniLM-L6-v2 vs sentence-transformers; target >= 1.0)")
    return 0


def quiver_run(qb, name, a, precision):
    """`quiver bench embed` at one precision: {long, short} rates."""
    q = last_json(run_stdout([qb, "bench", "embed", "--model", name, "--data", a.data, "--docs", str(a.docs),
                              "--threads", str(a.threads), "--batch-size", str(a.batch_size),
                              "--precision", precision, "--json"], "quiver bench embed"),
                  "quiver bench embed")
    return {k: q[k] for k in ("long", "short")}


def quiver_vectors(qb, name, a, precision, texts):
    qv = run_stdout([qb, "embed", "--model", name, "--allow-empty", "--threads", str(a.threads),
                     "--precision", precision], "quiver embed", stdin_text="\n".join(texts) + "\n")
    vecs = [json.loads(line)["vector"] for line in qv.splitlines() if line.strip()]
    if len(vecs) != len(texts):
        raise CompareError(f"quiver embed returned {len(vecs)} vectors for {len(texts)} texts")
    return vecs


def agreement(xs, ys):
    cos = [cosine(x, y) for x, y in zip(xs, ys)]
    return {"min_cosine": min(cos), "mean_cosine": sum(cos) / len(cos)}


def rate(r, kind):
    return r[kind]["sentences_per_s"]


def compare(a):
    if not os.path.isdir(a.data):
        raise CompareError(f"dataset directory {a.data} does not exist (set --data)")
    wanted = [m.strip() for m in a.models.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in dict(MODELS)]
    if unknown:
        raise CompareError(f"unknown model(s) {unknown}")
    precisions = [p.strip() for p in a.precisions.split(",") if p.strip()]
    if not precisions or precisions[0] != "f32" or any(p not in ("f32", "bf16", "int8") for p in precisions):
        raise CompareError(f"--precisions must start with f32 and name only f32, bf16, int8: {a.precisions}")
    qb = quiver_bin(log)
    py = ensure_venv()
    long, short = scifact_inputs(a.data, a.docs)
    # Newlines would split a text on `quiver embed`'s stdin; both engines get the same flattened text.
    parity = [t.replace("\r", " ").replace("\n", " ") for t in long[: PARITY_TEXTS // 2] + short[: PARITY_TEXTS // 2]]
    out = {"threads": a.threads, "batch_size": a.batch_size,
           "inputs": {"long": len(long), "short": len(short), "data": os.path.abspath(a.data)},
           "models": {}}
    with tempfile.TemporaryDirectory(prefix="quiver-compare-embed-") as tmp:
        inputs_path = os.path.join(tmp, "inputs.json")
        with open(inputs_path, "w", encoding="utf-8") as f:
            json.dump({"long": long, "short": short, "parity": parity}, f)
        for name, peer in MODELS:
            if name not in wanted:
                continue
            run_checked([qb, "models", "pull", name], f"quiver models pull {name}")
            model_dir = run_stdout([qb, "models", "path", name], "quiver models path").strip()
            transformer = peer == "sentence-transformers"
            q = quiver_run(qb, name, a, "f32")
            for kind, n in (("long", len(long)), ("short", len(short))):
                if q[kind]["texts"] != n:
                    raise CompareError(f"quiver embedded {q[kind]['texts']} {kind} texts, the peer {n}")
            p = run_peer(py, peer, model_dir, inputs_path, a.threads, a.batch_size)
            f32_vecs = quiver_vectors(qb, name, a, "f32", parity)
            peer_vecs = p.pop("parity_vectors")
            r = {
                "peer_name": peer,
                "quiver": q,
                "peer": {k: p[k] for k in ("long", "short")},
                "ratio_long": rate(q, "long") / rate(p, "long"),
                "ratio_short": rate(q, "short") / rate(p, "short"),
                "parity_min_cosine": agreement(f32_vecs, peer_vecs)["min_cosine"],
            }
            if transformer and a.onnxruntime:
                work = os.path.join(tmp, "onnx")
                os.makedirs(work, exist_ok=True)
                o = run_peer(py, "onnxruntime", model_dir, inputs_path, a.threads, a.batch_size, work=work)
                ort_f32 = o["f32"].pop("parity_vectors")
                ort_int8 = o["int8"].pop("parity_vectors")
                o["f32"].update(agreement(ort_f32, f32_vecs))
                o["int8"].update(agreement(ort_int8, ort_f32))
                o["int8"]["vs_quiver_f32"] = agreement(ort_int8, f32_vecs)
                r["onnxruntime"] = o
            if transformer:
                r["precisions"] = {"f32": dict(q, min_cosine=1.0, mean_cosine=1.0)}
                for prec in precisions[1:]:
                    qp = quiver_run(qb, name, a, prec)
                    qp.update(agreement(quiver_vectors(qb, name, a, prec, parity), f32_vecs))
                    r["precisions"][prec] = qp
                if "onnxruntime" in r:
                    ratios = {}
                    for prec, res in r["precisions"].items():
                        natural = "int8" if prec == "int8" else "f32"
                        peer_r = r["onnxruntime"][natural]
                        ratios[prec] = {"vs": f"onnxruntime-{natural}",
                                        "ratio_long": rate(res, "long") / rate(peer_r, "long"),
                                        "ratio_short": rate(res, "short") / rate(peer_r, "short")}
                    r["vs_onnxruntime"] = ratios
            out["models"][name] = r
    head = out["models"].get("all-MiniLM-L6-v2") or next(iter(out["models"].values()))
    out["ratio_long"], out["ratio_short"] = head["ratio_long"], head["ratio_short"]
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
