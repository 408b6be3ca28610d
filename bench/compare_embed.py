"""`bench/compare embed`: Quiver embedding throughput against its reference libraries.

One invocation, same machine, same inputs, same model files, 2 threads each:

  all-MiniLM-L6-v2  Quiver (candle, `quiver bench embed`)  vs  sentence-transformers (PyTorch CPU)
  potion-base-8M    Quiver (static model)                  vs  model2vec

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
    ap.add_argument("--peer", required=True, choices=["sentence-transformers", "model2vec"])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    a = ap.parse_args(argv)
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    with open(a.inputs, encoding="utf-8") as f:
        inputs = json.load(f)
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

    encode(inputs["long"][: a.batch_size])  # warm-up
    result = {"engine": a.peer, "threads": a.threads, "batch_size": a.batch_size}
    with torch.inference_mode():
        for kind in ("long", "short"):
            texts = inputs[kind]
            t = time.perf_counter()
            out = encode(texts)
            secs = time.perf_counter() - t
            assert len(out) == len(texts)
            result[kind] = {"texts": len(texts), "seconds": secs, "sentences_per_s": len(texts) / secs}
        parity = inputs["parity"]
        result["parity_vectors"] = np.asarray(encode(parity), dtype=np.float64).tolist()
    print(json.dumps(result))
    return 0


def run_peer(py, peer, model_dir, inputs_path, threads, batch_size):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    cmd = [py, os.path.realpath(__file__), "_peer", "--peer", peer, "--model-dir", model_dir,
           "--inputs", inputs_path, "--threads", str(threads), "--batch-size", str(batch_size)]
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
        print(f"\nratio_long {result['ratio_long']:.2f}  ratio_short {result['ratio_short']:.2f}  "
              f"(all-MiniLM-L6-v2 vs sentence-transformers; target >= 1.0)")
    return 0


def compare(a):
    if not os.path.isdir(a.data):
        raise CompareError(f"dataset directory {a.data} does not exist (set --data)")
    wanted = [m.strip() for m in a.models.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in dict(MODELS)]
    if unknown:
        raise CompareError(f"unknown model(s) {unknown}")
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
            q = last_json(run_stdout([qb, "bench", "embed", "--model", name, "--data", a.data,
                                      "--docs", str(a.docs), "--threads", str(a.threads),
                                      "--batch-size", str(a.batch_size), "--json"], "quiver bench embed"),
                          "quiver bench embed")
            for kind, n in (("long", len(long)), ("short", len(short))):
                if q[kind]["texts"] != n:
                    raise CompareError(f"quiver embedded {q[kind]['texts']} {kind} texts, the peer {n}")
            p = run_peer(py, peer, model_dir, inputs_path, a.threads, a.batch_size)
            qv = run_stdout([qb, "embed", "--model", name, "--allow-empty", "--threads", str(a.threads)],
                            "quiver embed", stdin_text="\n".join(parity) + "\n")
            qvecs = [json.loads(l)["vector"] for l in qv.splitlines() if l.strip()]
            if len(qvecs) != len(parity):
                raise CompareError(f"quiver embed returned {len(qvecs)} vectors for {len(parity)} texts")
            cos = [cosine(x, y) for x, y in zip(qvecs, p.pop("parity_vectors"))]
            out["models"][name] = {
                "peer_name": peer,
                "quiver": {k: q[k] for k in ("long", "short")},
                "peer": {k: p[k] for k in ("long", "short")},
                "ratio_long": q["long"]["sentences_per_s"] / p["long"]["sentences_per_s"],
                "ratio_short": q["short"]["sentences_per_s"] / p["short"]["sentences_per_s"],
                "parity_min_cosine": min(cos),
            }
    head = out["models"].get("all-MiniLM-L6-v2") or next(iter(out["models"].values()))
    out["ratio_long"], out["ratio_short"] = head["ratio_long"], head["ratio_short"]
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
