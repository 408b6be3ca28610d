"""`bench/compare ann`: Quiver HNSW against hnswlib and FAISS IndexHNSWFlat, on GloVe-6B-50d
or (`--dataset random384`) clustered random 384-d unit vectors, so a gain is not specific to
50 dimensions.

One invocation:
  1. `quiver bench ann --prepare-only --json` fetches/caches GloVe-6B-50d and
     names the base, query and ground-truth .npy files (L2-normalised, so
     inner product == cosine);
  2. `quiver bench ann --json` builds Quiver's index and sweeps ef;
  3. hnswlib and FAISS IndexHNSWFlat are built on the same base with the same
     m / ef_construction (all cores) and swept over the same ef list with
     single-thread queries, each in its own process of a private virtualenv
     (${QUIVER_BENCH_VENV:-~/.cache/quiver/bench-venv}, made on first use);
  4. QPS is interpolated along each curve's upper envelope at recall@10 =
     0.90 / 0.95 / 0.99 and Quiver QPS / best peer QPS is printed.

The orchestrating part uses only the standard library and runs under any
python3; the peer part (`_peer` sub-command) runs under the venv's python.
Peers live only here: nothing of them goes into the Quiver binary.
"""

import argparse
import json
import os
import sys
import time

from _common import (HERE, REPO, CompareError, cached_venv, entry, logger, run_json,
                     mark_venv_ready, quiver_bin, run_checked)

# Pinned peer stack (installs on CPython 3.11 / x86_64 Linux: numpy and
# faiss-cpu from wheels, hnswlib 0.8.0 builds from its sdist with g++).
PEER_REQUIREMENTS = [
    "numpy==2.4.6",
    "hnswlib==0.8.0",
    "faiss-cpu==1.15.1",
]
PEERS = ("hnswlib", "faiss")
DEFAULT_EF = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
QUICK_EF = [16, 32, 64, 128, 256]
LEVELS = ("0.90", "0.95", "0.99")
TARGET_LEVEL, TARGET_RATIO = "0.95", 1.3
DEFAULT_M, DEFAULT_EF_CONSTRUCTION, DEFAULT_REPS = 16, 200, 3
DATASETS = ("glove50", "random384")
DEFAULT_RANDOM_COUNT = 101_000


log = logger("ann")


# ---------------------------------------------------------------- venv


def venv_dir():
    d = os.environ.get("QUIVER_BENCH_VENV") or os.path.join("~", ".cache", "quiver", "bench-venv")
    return os.path.abspath(os.path.expanduser(d))


def ensure_venv():
    """Make (or reuse) the peer virtualenv and return its python."""
    d = venv_dir()
    py, ready = cached_venv(d, PEER_REQUIREMENTS, log)
    if ready:
        return py
    log(f"installing {' '.join(PEER_REQUIREMENTS)} into {d} (hnswlib may compile; a minute or two)")
    run_checked([py, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                 *PEER_REQUIREMENTS], "pip install")
    probe = "import numpy, hnswlib, faiss; print(faiss.__version__)"
    run_checked([py, "-c", probe], "importing the peers in the virtualenv")
    mark_venv_ready(d, PEER_REQUIREMENTS)
    return py


# ---------------------------------------------------------------- peers (venv side)


def _load_data(spec):
    import numpy as np

    base = np.ascontiguousarray(np.load(spec["base"]), dtype=np.float32)
    queries = np.ascontiguousarray(np.load(spec["queries"]), dtype=np.float32)
    gt = np.load(spec["gt"])
    if base.ndim != 2 or queries.ndim != 2 or base.shape[1] != queries.shape[1]:
        raise CompareError(f"bad shapes: base {base.shape}, queries {queries.shape}")
    if gt.shape[0] != queries.shape[0] or gt.shape[1] < 10:
        raise CompareError(f"bad ground truth shape {gt.shape} for {queries.shape[0]} queries")
    for name, a in (("base", base), ("queries", queries)):
        norms = np.linalg.norm(a, axis=1)
        if np.abs(norms - 1.0).max() > 1e-3:
            print(f"[peer] warning: {name} is not L2-normalised; normalising for cosine",
                  file=sys.stderr)
            a /= np.maximum(norms, 1e-30)[:, None]
    return base, queries, np.ascontiguousarray(gt[:, :10])


def _recall_at_10(labels, gt10):
    hits = 0
    for row, truth in zip(labels[:, :10].tolist(), gt10.tolist()):
        hits += len(set(row) & set(truth))
    return hits / (10.0 * len(gt10))


def _sweep(search, queries, gt10, efs, reps):
    rows = []
    n = len(queries)
    for ef in efs:
        best = float("inf")
        labels = None
        for _ in range(reps):
            t0 = time.perf_counter()
            labels = search(queries, ef)
            best = min(best, time.perf_counter() - t0)
        row = {"ef": ef, "recall_at_10": round(_recall_at_10(labels, gt10), 4),
               "qps": round(n / best, 1)}
        print(f"[peer]   ef={ef:<4} recall@10={row['recall_at_10']:.4f} qps={row['qps']:.0f}",
              file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def _run_hnswlib(spec, base, queries, gt10):
    import hnswlib
    from importlib.metadata import version

    n, d = base.shape
    index = hnswlib.Index(space="ip", dim=d)
    index.init_index(max_elements=n, M=spec["m"], ef_construction=spec["ef_construction"],
                     random_seed=100)
    threads = os.cpu_count() or 1
    t0 = time.perf_counter()
    index.add_items(base, num_threads=-1)  # all cores
    build_s = time.perf_counter() - t0
    print(f"[peer] hnswlib built in {build_s:.1f}s", file=sys.stderr, flush=True)
    index.set_num_threads(1)

    def search(q, ef):
        index.set_ef(ef)
        labels, _ = index.knn_query(q, k=10, num_threads=1)
        return labels

    rows = _sweep(search, queries, gt10, spec["ef"], spec["reps"])
    # Graph + vectors as hnswlib lays them out (what save_index would write).
    index_bytes = None
    try:
        import tempfile
        with tempfile.TemporaryDirectory() as td:
            p = os.path.join(td, "h.bin")
            index.save_index(p)
            index_bytes = os.path.getsize(p)
    except Exception:  # size is informative only
        pass
    return {"engine": "hnswlib", "version": version("hnswlib"), "build_s": round(build_s, 3),
            "build_threads": threads, "index_bytes": index_bytes, "rows": rows}


def _run_faiss(spec, base, queries, gt10):
    import faiss

    n, d = base.shape
    index = faiss.IndexHNSWFlat(d, spec["m"], faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = spec["ef_construction"]
    threads = faiss.omp_get_max_threads()  # OpenMP default: all cores
    t0 = time.perf_counter()
    index.add(base)
    build_s = time.perf_counter() - t0
    print(f"[peer] faiss built in {build_s:.1f}s", file=sys.stderr, flush=True)
    faiss.omp_set_num_threads(1)

    def search(q, ef):
        index.hnsw.efSearch = ef
        _, labels = index.search(q, 10)
        return labels

    rows = _sweep(search, queries, gt10, spec["ef"], spec["reps"])
    index_bytes = None
    try:
        index_bytes = int(faiss.serialize_index(index).nbytes)
    except Exception:
        pass
    return {"engine": "faiss", "version": faiss.__version__, "build_s": round(build_s, 3),
            "build_threads": threads, "index_bytes": index_bytes, "rows": rows}


def peer_main(argv):
    """Venv side: `python compare_ann.py _peer ENGINE SPEC_JSON` -> one JSON line."""
    engine, spec = argv[0], json.loads(argv[1])
    base, queries, gt10 = _load_data(spec)
    print(f"[peer] {engine}: base {base.shape}, queries {queries.shape}, m={spec['m']}, "
          f"ef_construction={spec['ef_construction']}", file=sys.stderr, flush=True)
    fn = {"hnswlib": _run_hnswlib, "faiss": _run_faiss}[engine]
    result = fn(spec, base, queries, gt10)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


# ---------------------------------------------------------------- curves


def envelope(rows):
    """Upper envelope (Pareto front) of (recall, qps): recall ascending, qps descending."""
    pts = sorted(((r["recall_at_10"], r["qps"]) for r in rows
                  if r.get("recall_at_10") is not None and r.get("qps")),
                 key=lambda p: (-p[0], -p[1]))
    front, best_qps = [], -1.0
    for rec, qps in pts:  # recall descending: keep a point only if it is faster than all better ones
        if qps > best_qps:
            front.append((rec, qps))
            best_qps = qps
    front.reverse()
    return front


def qps_at(rows, level):
    """QPS at recall `level`, linear in recall along the upper envelope; None if never reached."""
    front = envelope(rows)
    if not front or front[-1][0] < level:
        return None
    if front[0][0] >= level:
        return front[0][1]  # even the fastest point is past the level
    for (r0, q0), (r1, q1) in zip(front, front[1:]):
        if r0 <= level <= r1:
            if r1 == r0:
                return max(q0, q1)
            return q0 + (q1 - q0) * (level - r0) / (r1 - r0)
    return None


def summarise(results):
    """results: engine -> {"build_s", "rows", ...}; quiver first."""
    at = {eng: {lv: qps_at(res["rows"], float(lv)) for lv in LEVELS} for eng, res in results.items()}
    peers = [e for e in results if e != "quiver"]
    ratios, best_peer = {}, {}
    for lv in LEVELS:
        q = at.get("quiver", {}).get(lv)
        cands = [(at[p][lv], p) for p in peers if at[p][lv] is not None]
        best = max(cands) if cands else None
        best_peer[lv] = best[1] if best else None
        ratios[lv] = round(q / best[0], 3) if (q is not None and best) else None
    build_ratio, build_peer = None, None
    pb = [(results[p]["build_s"], p) for p in peers if results[p].get("build_s")]
    if pb and "quiver" in results and results["quiver"].get("build_s") is not None:
        b, build_peer = min(pb)
        build_ratio = round(results["quiver"]["build_s"] / b, 3)
    r = ratios.get(TARGET_LEVEL)
    target = {
        "level": TARGET_LEVEL, "min_qps_ratio": TARGET_RATIO, "max_build_ratio": 1.0,
        "met": (r is not None and r >= TARGET_RATIO and build_ratio is not None
                and build_ratio <= 1.0) if "quiver" in results and peers else None,
    }
    at_rounded = {e: {lv: (round(v, 1) if v is not None else None) for lv, v in d.items()}
                  for e, d in at.items()}
    return ratios, best_peer, build_ratio, build_peer, at_rounded, target


# ---------------------------------------------------------------- output


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_table(report, out=sys.stdout):
    p = lambda s="": print(s, file=out)
    d = report["data"]
    p(f"ANN comparison: {d.get('dataset', 'glove-6b-50d')}, {d.get('n_base')} x {d.get('dim')} "
      f"{d.get('metric')}, {d.get('n_queries')} queries, m={d['m']}, "
      f"ef_construction={d['ef_construction']}; build all cores, queries 1 thread")
    p()
    p(f"{'engine':<9}{'ef':>6}{'recall@10':>11}{'qps':>11}{'build_s':>10}")
    for r in report["rows"]:
        p(f"{r['engine']:<9}{r['ef']:>6}{r['recall_at_10']:>11.4f}{r['qps']:>11.0f}"
          f"{fmt(r['build_s'], '.1f'):>10}")
    p()
    p("QPS at recall@10 (interpolated on each curve's upper envelope):")
    p(f"{'engine':<9}" + "".join(f"{lv:>10}" for lv in LEVELS))
    for eng, d2 in report["qps_at_recall"].items():
        p(f"{eng:<9}" + "".join(f"{fmt(d2[lv], '.0f'):>10}" for lv in LEVELS))
    cells = [("-" if report["ratios"][lv] is None else f"{report['ratios'][lv]:.2f}x")
             for lv in LEVELS]
    p(f"{'ratio':<9}" + "".join(f"{c:>10}" for c in cells) + "   (quiver / best peer)")
    p(f"{'best':<9}" + "".join(f"{report['best_peer'][lv] or '-':>10}" for lv in LEVELS))
    p()
    b = report["build"]
    if report["build_ratio"] is not None:
        p(f"build: quiver {b['quiver']:.1f}s, best peer {b[report['build_peer']]:.1f}s "
          f"({report['build_peer']}), ratio {report['build_ratio']:.2f}")
    t = report["target"]
    if t["met"] is not None:
        p(f"target (>= {t['min_qps_ratio']}x best peer QPS at recall@10 {t['level']}, "
          f"build ratio <= {t['max_build_ratio']:.1f}): {'MET' if t['met'] else 'NOT MET'}")
    p("peers: " + ", ".join(f"{k} {v}" for k, v in report["peers"].items()))


# ---------------------------------------------------------------- main


def parse_ef(s):
    try:
        efs = [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad ef list {s!r}")
    if not efs or min(efs) < 1:
        raise argparse.ArgumentTypeError(f"bad ef list {s!r}")
    return efs


def build_parser():
    ap = argparse.ArgumentParser(
        prog="bench/compare ann",
        description="Quiver HNSW vs hnswlib and FAISS IndexHNSWFlat on GloVe-6B-50d "
                    "(same data, queries, m and ef_construction; single-thread QPS).")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object on stdout instead of the table")
    ap.add_argument("--ef", type=parse_ef, default=None,
                    help=f"comma-separated ef list (default {','.join(map(str, DEFAULT_EF))})")
    ap.add_argument("--quick", action="store_true",
                    help=f"short sweep, ef {','.join(map(str, QUICK_EF))}, 1 timing repetition "
                         "(--ef overrides the list)")
    ap.add_argument("--m", type=int, default=DEFAULT_M, help=f"HNSW m (default {DEFAULT_M})")
    ap.add_argument("--ef-construction", type=int, default=DEFAULT_EF_CONSTRUCTION,
                    help=f"HNSW ef_construction (default {DEFAULT_EF_CONSTRUCTION})")
    ap.add_argument("--reps", type=int, default=None,
                    help=f"peer timing repetitions per ef, best kept (default {DEFAULT_REPS}, "
                         "1 with --quick)")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help=f"comma-separated peers to run (default {','.join(PEERS)})")
    ap.add_argument("--threads", type=int, default=None,
                    help="passed to `quiver bench ann --threads` (Quiver build threads)")
    ap.add_argument("--peers-only", action="store_true",
                    help="skip `quiver bench ann` (quiver still prepares the data); no ratios")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 when the target (>= 1.3x at 0.95, build no slower) is not met")
    ap.add_argument("--dataset", choices=DATASETS, default="glove50",
                    help="glove50 (GloVe-6B-50d, 400k) or random384 (clustered, normalised "
                         "MiniLM-like 384-d vectors from `quiver bench ingest --prepare-only`)")
    ap.add_argument("--count", type=int, default=DEFAULT_RANDOM_COUNT,
                    help=f"random384: vectors generated (queries are split off them; default "
                         f"{DEFAULT_RANDOM_COUNT})")
    return ap


def main(argv):
    args = build_parser().parse_args(argv)
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    for p in peers:
        if p not in PEERS:
            print(f"bench/compare ann: unknown peer {p!r} (known: {', '.join(PEERS)})",
                  file=sys.stderr)
            return 2
    efs = args.ef or (QUICK_EF if args.quick else DEFAULT_EF)
    reps = args.reps or (1 if args.quick else DEFAULT_REPS)
    try:
        report = run(args, peers, efs, reps)
    except CompareError as e:
        print(f"bench/compare ann: {e}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        print_table(report)
    if args.check and report["target"]["met"] is not True:
        return 1
    return 0


def _loadavg():
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def run(args, peers, efs, reps):
    t_start = time.time()
    load_start = _loadavg()
    if load_start is not None and load_start > 0.5 * (os.cpu_count() or 1):
        log(f"warning: 1-minute load average is {load_start:.1f} on {os.cpu_count()} cpus; "
            "other work on this machine will distort build times and QPS")
    # Peers first checked/installed, so a broken venv fails before the long runs.
    py = ensure_venv() if peers else None
    qbin = quiver_bin(log)
    data_arg = []
    if args.dataset == "random384":
        # The vectors of `quiver bench ingest`'s random source; `quiver bench ann --data` splits
        # its queries off them and computes the exact ground truth, as for GloVe.
        gen = run_json([qbin, "bench", "ingest", "--prepare-only", "--source", "random",
                        "--dim", "384", "--count", str(args.count), "--queries", "10", "--json"],
                       "generating random 384-d vectors", log, cwd=REPO)
        if not gen.get("base") or not os.path.exists(gen["base"]):
            raise CompareError(f"quiver bench ingest --prepare-only gave no base: {gen}")
        data_arg = ["--data", gen["base"]]
    prep = run_json([qbin, "bench", "ann", "--prepare-only", "--json", *data_arg],
                    "quiver data preparation", log, cwd=REPO)
    for key in ("base", "queries", "gt"):
        if not prep.get(key) or not os.path.exists(prep[key]):
            raise CompareError(f"quiver --prepare-only gave no usable {key!r}: {prep.get(key)!r}")
    ef_csv = ",".join(map(str, efs))

    results = {}
    quiver_extra = {}
    if not args.peers_only:
        cmd = [qbin, "bench", "ann", "--json", "--m", str(args.m),
               "--ef-construction", str(args.ef_construction), "--ef", ef_csv, *data_arg]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        q = run_json(cmd, "quiver bench ann", log, cwd=REPO)
        if not isinstance(q.get("rows"), list) or "build_s" not in q:
            raise CompareError(f"quiver bench ann output lacks rows/build_s: {str(q)[:300]}")
        results["quiver"] = {"build_s": q["build_s"], "rows": q["rows"]}
        quiver_extra = {k: v for k, v in q.items() if k not in ("rows",)}

    spec = {"base": prep["base"], "queries": prep["queries"], "gt": prep["gt"],
            "m": args.m, "ef_construction": args.ef_construction, "ef": efs, "reps": reps}
    versions, peer_extra = {}, {}
    for p in peers:
        log(f"running peer {p} (build on all cores, then ef sweep on 1 thread)")
        res = run_json([py, os.path.join(HERE, "compare_ann.py"), "_peer", p, json.dumps(spec)],
                       f"peer {p}", log)
        versions[p] = res.get("version")
        results[p] = {"build_s": res["build_s"], "rows": res["rows"]}
        peer_extra[p] = {"build_threads": res.get("build_threads"),
                         "index_bytes": res.get("index_bytes")}

    rows = []
    for eng, res in results.items():
        for r in sorted(res["rows"], key=lambda r: r["ef"]):
            rows.append({"engine": eng, "ef": r["ef"], "recall_at_10": r["recall_at_10"],
                         "qps": r["qps"], "build_s": res["build_s"]})
    ratios, best_peer, build_ratio, build_peer, at, target = summarise(results)
    data = {k: v for k, v in prep.items()}
    data["dataset"] = ("glove-6b-50d" if args.dataset == "glove50"
                       else f"random-384d-clustered-{args.count}")
    data.update({"m": args.m, "ef_construction": args.ef_construction, "ef": efs,
                 "reps": reps, "query_threads": 1, "cpus": os.cpu_count(),
                 "loadavg_1m": {"start": load_start, "end": _loadavg()}})
    return {
        "rows": rows,
        "ratios": ratios,
        "build_ratio": build_ratio,
        "build_peer": build_peer,
        "best_peer": best_peer,
        "build": {e: r["build_s"] for e, r in results.items()},
        "qps_at_recall": at,
        "target": target,
        "peers": versions,
        "peer_details": peer_extra,
        "quiver": quiver_extra,
        "data": data,
        "elapsed_s": round(time.time() - t_start, 1),
    }


if __name__ == "__main__":
    entry(main, peer_main)
