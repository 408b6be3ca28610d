"""`bench/compare codecs`: Quiver's codecs, graphs over codes and Matryoshka/PCA funnels against
FAISS compressed indexes, on the same data, queries and ground truth.

One invocation:
  1. `quiver bench codecs --prepare-only --json` caches the data sets (GloVe-6B-50d split as
     `bench ann` makes it; all-MiniLM-L6-v2 vectors of SciFact with the SciFact queries) with
     exact top-100 ground truth, and names their .npy files;
  2. `quiver bench codecs --json` measures every Quiver plan (recall@10 vs exact f32,
     single-thread QPS, RAM bytes per vector);
  3. FAISS runs, in one process of the peer virtualenv per data set, single thread, the whole
     query batch per call:
       - IndexFlatIP (also one query per call, and with a 10% IDSelectorBitmap filter), against
         Quiver's f32-flat plans (one query per call, the batch per call, each with the filter),
       - IndexScalarQuantizer(QT_8bit) (codes only, and + exact rerank via IndexRefineFlat),
       - IndexBinaryFlat on sign bits + exact rerank of the top R (R = 100 is the named
         configuration; larger R for the curve),
       - IndexPQ (m = d/2 and d/4, 8 bits) + exact rerank (IndexRefineFlat, k_factor = R/10),
       - IndexHNSWFlat (M = 16, efConstruction = 200) as the full-dimension reference;
  4. targets:
       compressed: a Quiver plan with RAM <= 1/8 of f32 reaches recall@10 >= 0.95 at higher QPS
                   than FAISS's best comparable configuration (RAM <= 1/8 of f32, recall@10 >=
                   0.95; when no FAISS configuration reaches 0.95, its most accurate one);
       funnel:     a Matryoshka/PCA funnel reaches the recall of full-dimension HNSW at 0.95
                   (QPS interpolated on the faster of Quiver's and FAISS's HNSW curves) at >= 3x
                   that QPS.
       flat:       Quiver's exact scan of the whole batch (flat::search_batch) at least FAISS
                   IndexFlatIP's QPS, unfiltered and with the 10% filter.
     Each target's boolean is true when it holds on every data set; per-data-set details
     are printed beside it.

RAM bytes per vector count what must stay resident: codes (+ graph links, + f32 vectors when
they are scanned or walked). Full vectors read only to rerank are counted as disk.
"""

import argparse
import json
import os
import sys
import time

from _common import HERE, REPO, CompareError, entry, logger, run_json, quiver_bin

import compare_ann

log = logger("codecs")

TARGET_RECALL = 0.95
RAM_FRACTION = 1.0 / 8.0
FUNNEL_RATIO = 3.0
HNSW_EF = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256]


# ---------------------------------------------------------------- FAISS (venv side)


def _peer(spec):
    import faiss
    import numpy as np

    base = np.ascontiguousarray(np.load(spec["base"]), dtype=np.float32)
    queries = np.ascontiguousarray(np.load(spec["queries"]), dtype=np.float32)
    gt = np.load(spec["gt"])[:, :10]
    n, d = base.shape
    nq = len(queries)
    f32 = 4.0 * d
    reps = spec["reps"]
    rows = []

    def recall(labels, gt=gt):
        hits = 0
        for row, truth in zip(labels[:, :10].tolist(), gt.tolist()):
            hits += len(set(row) & set(t for t in truth if t >= 0))
        return hits / (10.0 * nq)

    def timed(fn):
        best, out = float("inf"), None
        for _ in range(reps):
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
        return out, nq / best

    def add(plan, family, labels, qps, ram, disk, truth=gt):
        row = {"engine": "faiss", "plan": plan, "family": family,
               "recall_at_10": round(recall(labels, truth), 4), "qps": round(qps, 1),
               "ram_bytes_per_vector": ram, "disk_bytes_per_vector": disk,
               "ram_fraction_of_f32": ram / f32}
        print(f"[peer]   {plan:<34} recall@10={row['recall_at_10']:.4f} qps={row['qps']:.0f} "
              f"ram={ram:.1f} B/vec", file=sys.stderr, flush=True)
        rows.append(row)

    # Training and building on all cores; queries on one.
    threads = faiss.omp_get_max_threads()
    t0 = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 200
    hnsw.add(base)
    hnsw_build = time.perf_counter() - t0
    hnsw_bytes = int(faiss.serialize_index(hnsw).nbytes) / n
    sq = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    sq.train(base)
    sq.add(base)
    pqs = {}
    for m in (d // 2, d // 4):
        # IndexPQ needs m to divide d.
        if m < 1 or d % m:
            continue
        pq = faiss.IndexPQ(d, m, 8, faiss.METRIC_INNER_PRODUCT)
        pq.train(base)
        pq.add(base)
        pqs[m] = pq
    bits = np.packbits(base > 0, axis=1)
    qbits = np.packbits(queries > 0, axis=1)
    nbytes = bits.shape[1]
    binary = faiss.IndexBinaryFlat(nbytes * 8)
    binary.add(bits)
    print(f"[peer] built/trained on {threads} threads (HNSW {hnsw_build:.1f}s)", file=sys.stderr,
          flush=True)
    faiss.omp_set_num_threads(1)

    flat = faiss.IndexFlatIP(d)
    flat.add(base)
    (_, lab), qps = timed(lambda: flat.search(queries, 10))
    add("faiss f32-flat", "f32-flat", lab, qps, f32, 0.0)

    def one_by_one():
        return np.vstack([flat.search(queries[i:i + 1], 10)[1] for i in range(nq)])

    lab, qps = timed(one_by_one)
    add("faiss f32-flat one query per call", "f32-flat", lab, qps, f32, 0.0)
    # The 10% filter Quiver's filtered plans use: rows of base.npy whose index is a multiple of 10,
    # as an IDSelectorBitmap in the search parameters; its truth is a numpy brute force.
    allowed = np.arange(0, n, 10)
    bitmap = np.packbits(np.arange(n) % 10 == 0, bitorder="little")
    params = faiss.SearchParameters()
    params.sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
    gt_f = filtered_truth(base[allowed], queries, allowed)
    (_, lab), qps = timed(lambda: flat.search(queries, 10, params=params))
    add("faiss f32-flat filter10%", "f32-flat-filter10", lab, qps, f32, 0.0, gt_f)
    for ef in spec["hnsw_ef"]:
        hnsw.hnsw.efSearch = ef
        (_, lab), qps = timed(lambda: hnsw.search(queries, 10))
        add(f"faiss hnswflat ef{ef}", "f32-hnsw", lab, qps, hnsw_bytes, 0.0)

    (_, lab), qps = timed(lambda: sq.search(queries, 10))
    add("faiss sq8", "int8", lab, qps, float(d), 0.0)
    for kf in (2, 4):
        ref = faiss.IndexRefineFlat(sq, faiss.swig_ptr(base))
        ref.k_factor = kf
        (_, lab), qps = timed(lambda: ref.search(queries, 10))
        add(f"faiss sq8+rerank{10 * kf}", "int8", lab, qps, float(d), f32)

    def binary_rerank(r):
        _, cand = binary.search(qbits, r)
        out = np.empty((nq, 10), dtype=np.int64)
        # Exact rerank in query blocks (bounded memory: block x r x d floats).
        step = max(1, (32 << 20) // (4 * r * d))
        for s in range(0, nq, step):
            c = cand[s:s + step]
            scores = np.matmul(base[c], queries[s:s + step, :, None])[:, :, 0]
            top = np.argpartition(-scores, 10, axis=1)[:, :10]
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1)
            out[s:s + step] = np.take_along_axis(np.take_along_axis(c, top, axis=1), order, axis=1)
        return out

    rs = [100, 400, 1600, 6400] if n > 100_000 else [50, 100, 200, 400]
    if 100 not in rs:
        rs = sorted(rs + [100])
    for r in rs:
        lab, qps = timed(lambda: binary_rerank(r))
        add(f"faiss binary-sign+rerank{r}", "binary-hamming", lab, qps, float(nbytes), f32)

    for m, pq in pqs.items():
        (_, lab), qps = timed(lambda: pq.search(queries, 10))
        add(f"faiss pq{m}", "pq", lab, qps, float(m), 0.0)
        for r in (50, 100, 200):
            ref = faiss.IndexRefineFlat(pq, faiss.swig_ptr(base))
            ref.k_factor = r / 10.0
            (_, lab), qps = timed(lambda: ref.search(queries, 10))
            add(f"faiss pq{m}+rerank{r}", "pq", lab, qps, float(m), f32)

    return {"engine": "faiss", "version": faiss.__version__, "n_base": n, "dim": d,
            "n_queries": nq, "rows": rows}


def filtered_truth(sub, queries, ids, k=10, step=256):
    """Exact top-k of every query over the rows `sub` (ids `ids`), in query blocks."""
    import numpy as np

    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), step):
        scores = queries[s:s + step] @ sub.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[s:s + step] = ids[np.take_along_axis(top, order, axis=1)]
    return out


def peer_main(argv):
    spec = json.loads(argv[0])
    sys.stdout.write(json.dumps(_peer(spec)) + "\n")
    return 0


# ---------------------------------------------------------------- targets


def best_qps(rows, pred):
    c = [r for r in rows if pred(r)]
    return max(c, key=lambda r: r["qps"]) if c else None


def hnsw_qps_at(rows, level):
    pts = [{"recall_at_10": r["recall_at_10"], "qps": r["qps"]} for r in rows]
    return compare_ann.qps_at(pts, level) if pts else None


def targets_for(dataset, qrows, frows):
    small = lambda r: r["ram_fraction_of_f32"] <= RAM_FRACTION + 1e-9
    good = lambda r: r["recall_at_10"] >= TARGET_RECALL
    q_best = best_qps(qrows, lambda r: small(r) and good(r))
    f_best = best_qps(frows, lambda r: small(r) and good(r))
    f_basis = "recall >= 0.95"
    if f_best is None:
        fs = [r for r in frows if small(r)]
        f_best = max(fs, key=lambda r: (r["recall_at_10"], r["qps"])) if fs else None
        f_basis = "no FAISS config <= 1/8 reaches 0.95: its most accurate one"
    compressed = {
        "quiver_plan": q_best and q_best["plan"], "quiver_qps": q_best and q_best["qps"],
        "quiver_recall": q_best and q_best["recall_at_10"],
        "faiss_plan": f_best and f_best["plan"], "faiss_qps": f_best and f_best["qps"],
        "faiss_recall": f_best and f_best["recall_at_10"], "faiss_basis": f_basis,
        "ratio": round(q_best["qps"] / f_best["qps"], 3) if (q_best and f_best) else None,
    }
    compressed["met"] = bool(q_best and (f_best is None or q_best["qps"] > f_best["qps"]))

    hq = hnsw_qps_at([r for r in qrows if r["family"] == "f32-hnsw"], TARGET_RECALL)
    hf = hnsw_qps_at([r for r in frows if r["family"] == "f32-hnsw"], TARGET_RECALL)
    ref = max([v for v in (hq, hf) if v is not None], default=None)
    fun = best_qps(qrows, lambda r: r["family"].startswith("funnel") and good(r))
    funnel = {
        "hnsw_qps_at_0.95": {"quiver": hq and round(hq, 1), "faiss": hf and round(hf, 1)},
        "funnel_plan": fun and fun["plan"], "funnel_qps": fun and fun["qps"],
        "funnel_recall": fun and fun["recall_at_10"],
        "ratio": round(fun["qps"] / ref, 3) if (fun and ref) else None,
    }
    funnel["met"] = bool(fun and ref and fun["qps"] >= FUNNEL_RATIO * ref)
    return {"compressed": compressed, "funnel": funnel, "flat": flat_target(qrows, frows)}


FLAT_PAIRS = [  # (what is compared, Quiver plan, FAISS plan)
    ("batch", "f32-flat batch", "faiss f32-flat"),
    ("batch filter10%", "f32-flat batch filter10%", "faiss f32-flat filter10%"),
    ("one query per call", "f32-flat", "faiss f32-flat one query per call"),
]


def flat_target(qrows, frows):
    """Exact f32 scans side by side: the whole batch per call (unfiltered and with the 10% filter)
    must be at least FAISS IndexFlatIP's QPS; one query per call is reported beside them."""
    by_plan = {r["plan"]: r for r in qrows + frows}
    out = {}
    for what, qp, fp in FLAT_PAIRS:
        q, f = by_plan.get(qp), by_plan.get(fp)
        out[what] = {"quiver_plan": qp, "quiver_qps": q and q["qps"],
                     "quiver_recall": q and q["recall_at_10"], "faiss_plan": fp,
                     "faiss_qps": f and f["qps"], "faiss_recall": f and f["recall_at_10"],
                     "ratio": round(q["qps"] / f["qps"], 3) if (q and f) else None}
    out["met"] = all(out[w]["ratio"] is not None and out[w]["ratio"] >= 1.0
                     for w, _, _ in FLAT_PAIRS[:2])
    return out


# ---------------------------------------------------------------- output


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_table(rep, out=sys.stdout):
    p = lambda s="": print(s, file=out)
    for ds in rep["datasets"]:
        name = ds["name"]
        p(f"== {name}: {ds['n_base']} x {ds['dim']} cosine, {ds['n_queries']} queries, "
          f"f32 = {ds['f32_bytes_per_vector']} B/vector; queries on 1 thread")
        p(f"{'engine':<7} {'plan':<40}{'recall@10':>10}{'QPS':>10}{'RAM B/vec':>11}"
          f"{'RAM/f32':>9}")
        for r in rep["rows"]:
            if r["dataset"] != name:
                continue
            p(f"{r['engine']:<7} {r['plan']:<40}{r['recall_at_10']:>10.4f}{r['qps']:>10.0f}"
              f"{r['ram_bytes_per_vector']:>11.1f}{r['ram_fraction_of_f32']:>9.3f}")
        t = rep["target_details"][name]
        c, f = t["compressed"], t["funnel"]
        p()
        p(f"compressed (RAM <= 1/8 f32, recall@10 >= 0.95): quiver {c['quiver_plan'] or '-'} "
          f"{fmt(c['quiver_qps'], '.0f')} QPS vs faiss {c['faiss_plan'] or '-'} "
          f"{fmt(c['faiss_qps'], '.0f')} QPS (recall {fmt(c['faiss_recall'], '.3f')}; "
          f"{c['faiss_basis']}) -> ratio {fmt(c['ratio'], '.2f')}: "
          f"{'MET' if c['met'] else 'NOT MET'}")
        h = f["hnsw_qps_at_0.95"]
        p(f"funnel (recall >= 0.95 at >= 3x full-dim HNSW QPS at 0.95; quiver HNSW "
          f"{fmt(h['quiver'], '.0f')}, faiss HNSW {fmt(h['faiss'], '.0f')}): "
          f"{f['funnel_plan'] or '-'} {fmt(f['funnel_qps'], '.0f')} QPS -> ratio "
          f"{fmt(f['ratio'], '.2f')}: {'MET' if f['met'] else 'NOT MET'}")
        fl = t["flat"]
        p("exact f32 scan vs FAISS IndexFlatIP (batch and batch filter10% >= 1.0): " + "; ".join(
            f"{w} {fmt(fl[w]['ratio'], '.2f')}x" for w, _, _ in FLAT_PAIRS)
          + f": {'MET' if fl['met'] else 'NOT MET'}")
        p()
    p("targets: " + ", ".join(f"{k}={'MET' if v else 'NOT MET'}"
                              for k, v in rep["targets"].items()))
    p(f"faiss {rep['peers'].get('faiss')}; elapsed {rep['elapsed_s']}s")


# ---------------------------------------------------------------- main


def build_parser():
    ap = argparse.ArgumentParser(
        prog="bench/compare codecs",
        description="Quiver codecs / graphs over codes / Matryoshka-PCA funnels vs FAISS SQ8, "
                    "binary + rerank, PQ + rerank and HNSWFlat (same data, 1 query thread).")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object (rows, targets) instead of the table")
    ap.add_argument("--datasets", default="glove,scifact",
                    help="comma-separated: glove, scifact (default both)")
    ap.add_argument("--reps", type=int, default=2, help="timing repetitions (best kept)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is not met")
    return ap


def main(argv):
    args = build_parser().parse_args(argv)
    try:
        rep = run(args)
    except CompareError as e:
        print(f"bench/compare codecs: {e}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(json.dumps(rep) + "\n")
    else:
        print_table(rep)
    if args.check and not all(rep["targets"].values()):
        return 1
    return 0


def run(args):
    t_start = time.time()
    py = compare_ann.ensure_venv()
    qbin = quiver_bin(log)
    prep = run_json([qbin, "bench", "codecs", "--prepare-only", "--json", "--datasets",
                     args.datasets], "quiver data preparation", log, cwd=REPO)
    q = run_json([qbin, "bench", "codecs", "--json", "--datasets", args.datasets, "--reps",
                  str(args.reps)], "quiver bench codecs", log, cwd=REPO)
    rows = [dict(r, engine="quiver") for r in q["rows"]]
    version = None
    details, sets = {}, []
    for ds in q["datasets"]:
        name = ds["name"]
        files = prep["datasets"][name]
        spec = {"base": files["base"], "queries": files["queries"], "gt": files["gt"],
                "reps": args.reps, "hnsw_ef": HNSW_EF}
        log(f"running FAISS on {name}")
        res = run_json([py, os.path.join(HERE, "compare_codecs.py"), "_peer", json.dumps(spec)],
                       f"faiss on {name}", log)
        version = res.get("version")
        frows = [dict(r, dataset=name) for r in res["rows"]]
        rows.extend(frows)
        details[name] = targets_for(name, [r for r in rows if r["engine"] == "quiver"
                                           and r["dataset"] == name], frows)
        sets.append(ds)
    targets = {
        "compressed_ram_1_8_recall_0_95_faster_than_faiss":
            all(d["compressed"]["met"] for d in details.values()),
        "funnel_matches_hnsw_recall_at_3x_qps":
            all(d["funnel"]["met"] for d in details.values()),
        "f32_flat_at_least_faiss_flat":
            all(d["flat"]["met"] for d in details.values()),
    }
    return {"rows": rows, "datasets": sets, "targets": targets, "target_details": details,
            "peers": {"faiss": version}, "quiver": {"simd": q.get("simd")},
            "query_threads": 1, "cpus": os.cpu_count(),
            "elapsed_s": round(time.time() - t_start, 1)}


if __name__ == "__main__":
    entry(main, peer_main)
