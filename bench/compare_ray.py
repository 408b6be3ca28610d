"""`bench/compare ray`: what scatter-gather costs in quiver.ray, measured on loopback.

The same documents (N seeded random unit vectors of DIM dims, and a text of 12 words drawn from
a Zipf vocabulary of 5,000, seeded) in three setups, one after the other in one process of a
private virtualenv (${QUIVER_BENCH_RAY_VENV:-~/.cache/quiver/bench-ray-venv}: numpy, ray, maturin
and a release wheel of python/):
  local     one quiver collection in the driver's process (no Ray);
  1 shard   quiver.ray.create_sharded(shards=1) on a local Ray instance (loopback);
  2 shards  shards=2 over the same documents.
Per setup and kind of query (dense HNSW at ef 64, dense exact, BM25, hybrid RRF), Q single queries
from one driver thread after a warm-up: p50 and p99 latency in ms and QPS; then the ratios of
2 shards to 1 shard (the scatter-gather overhead: the merge, the fan-out, a second actor) and
of 1 shard to local (the actor round trip). Every figure is from this run.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from _common import HERE, CompareError, entry, logger, run_json
from compare_python import ensure_venv, venv_dir

log = logger("ray")
REQUIREMENTS = ["numpy==2.4.6", "ray[data]==2.60.0", "pyarrow==26.0.1", "pandas==3.1.1",
                "maturin==1.16.0"]
KINDS = ("dense", "exact", "bm25", "hybrid")


def _corpus(n, dim, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vocab = [f"w{i}" for i in range(5000)]
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    words = rng.choice(len(vocab), size=(n, 12), p=p)
    texts = [" ".join(vocab[w] for w in row) for row in words]
    qwords = rng.choice(len(vocab), size=(1000, 3), p=p)
    qtexts = [" ".join(vocab[w] for w in row) for row in qwords]
    qvecs = rng.standard_normal((1000, dim)).astype(np.float32)
    return vecs, texts, qvecs, qtexts


def _time(col, kind, qvecs, qtexts, n_queries):
    import numpy as np

    def one(i):
        v, t = qvecs[i % len(qvecs)], qtexts[i % len(qtexts)]
        if kind == "dense":
            return col.search(v, k=10, ef=64, with_payload=False)
        if kind == "exact":
            return col.search(v, k=10, exact=True, with_payload=False)
        if kind == "bm25":
            return col.search(t, mode="bm25", k=10, with_payload=False)
        return col.search(t, mode="hybrid", vector=v, k=10, ef=64, with_payload=False)

    for i in range(min(50, n_queries)):
        one(i)
    lat = []
    t0 = time.perf_counter()
    for i in range(n_queries):
        t = time.perf_counter()
        one(i)
        lat.append((time.perf_counter() - t) * 1e3)
    wall = time.perf_counter() - t0
    lat = np.asarray(lat)
    return {"p50_ms": round(float(np.percentile(lat, 50)), 3), "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "qps": round(n_queries / wall, 1)}


def peer_main(argv):
    """Venv side: every setup, one JSON line."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only
    import ray
    import quiver
    import quiver.ray as qray

    spec = json.loads(argv[0])
    n, dim, nq = spec["n"], spec["dim"], spec["queries"]
    vecs, texts, qvecs, qtexts = _corpus(n, dim, spec["seed"])
    schema = {"fields": {"emb": {"type": "dense", "dim": dim, "metric": "cosine"},
                         "body": {"type": "text", "source": ["text"]}}}
    work = tempfile.mkdtemp(prefix="quiver-bench-ray-")
    out = {"n": n, "dim": dim, "queries": nq, "cpus": os.cpu_count(), "setups": {}}
    try:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        setups = [("local", None), ("1 shard", 1), ("2 shards", 2)]
        for name, shards in setups:
            print(f"[peer] {name}: loading {n} x {dim}", file=sys.stderr, flush=True)
            if shards is None:
                col = quiver.connect(os.path.join(work, "local")).create_collection("b", schema)
            else:
                col = qray.create_sharded("b", schema, shards=shards, root=os.path.join(work, name), timeout_s=120)
            for s in range(0, n, 5000):
                col.add(list(range(s, min(s + 5000, n))), [{"text": t} for t in texts[s:s + 5000]],
                        {"emb": vecs[s:s + 5000]})
            col.flush()
            out["setups"][name] = {k: _time(col, k, qvecs, qtexts, nq) for k in KINDS}
            print(f"[peer] {name}: {out['setups'][name]}", file=sys.stderr, flush=True)
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out))
    return 0


def ratios(report):
    s = report["setups"]
    out = {}
    for kind in KINDS:
        one, two, loc = s["1 shard"][kind], s["2 shards"][kind], s["local"][kind]
        out[kind] = {"2_shards_over_1_p50": round(two["p50_ms"] / one["p50_ms"], 2),
                     "2_shards_minus_1_p50_ms": round(two["p50_ms"] - one["p50_ms"], 3),
                     "1_shard_over_local_p50": round(one["p50_ms"] / loc["p50_ms"], 2),
                     "1_shard_minus_local_p50_ms": round(one["p50_ms"] - loc["p50_ms"], 3)}
    return out


def main(argv):
    p = argparse.ArgumentParser(prog="bench/compare ray", description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=100_000, help="documents")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=500, help="timed queries per setup and kind")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        py = ensure_venv(venv_dir("QUIVER_BENCH_RAY_VENV", "bench-ray-venv"), REQUIREMENTS, log)
        spec = {"n": args.count, "dim": args.dim, "queries": args.queries, "seed": args.seed}
        log(f"seed {args.seed}")
        report = run_json([py, os.path.join(HERE, "compare_ray.py"), "_peer", json.dumps(spec)],
                          "compare_ray _peer", log)
    except CompareError as e:
        print(f"bench/compare ray: {e}", file=sys.stderr)
        return 1
    report["ratios"] = ratios(report)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['n']} x {report['dim']}, {report['queries']} queries per cell, one driver thread, "
          f"{report['cpus']} CPUs")
    print(f"{'setup':<9} " + " ".join(f"{k + ' p50/p99 ms':>22}" for k in KINDS))
    for name, cells in report["setups"].items():
        print(f"{name:<9} " + " ".join(f"{c['p50_ms']:>10.3f} /{c['p99_ms']:>9.3f}" for c in cells.values()))
    for kind, r in report["ratios"].items():
        print(f"  {kind}: 2 shards / 1 shard p50 {r['2_shards_over_1_p50']}x "
              f"(+{r['2_shards_minus_1_p50_ms']} ms); 1 shard / local {r['1_shard_over_local_p50']}x "
              f"(+{r['1_shard_minus_local_p50_ms']} ms)")
    return 0


if __name__ == "__main__":
    entry(main, peer_main)
