"""`bench/compare python`: Quiver's Python API against LanceDB, Chroma and FAISS from Python.

One invocation, on the same data for every engine:
  1. data: `quiver bench codecs --prepare-only --datasets scifact,glove` (all-MiniLM-L6-v2
     vectors of SciFact's 5,183 documents and its queries; GloVe-6B-50d split as `bench ann`
     splits it; exact top-100 of each); every row gets an integer payload `bucket` = row % 100,
     so `bucket == 0` selects 1%;
  2. a private virtualenv (${QUIVER_BENCH_PYTHON_VENV:-~/.cache/quiver/bench-python-venv}) with
     the peers of `bench/compare ingest` (faiss-cpu, chromadb, lancedb, pinned) and maturin; the
     Quiver wheel is built there from python/ (`maturin build --release`) and installed;
  3. each engine runs in its own process of that venv, per data set:
       ingest   the precomputed float32 vectors (and buckets) in, index built, timed to searchable:
                quiver    Collection.bulk_load (HNSW m=16, ef_construction=200, cosine);
                faiss     IndexHNSWFlat(M=16, efConstruction=200, inner product) .add;
                chroma    PersistentClient, hnsw:M 16 / construction_ef 200 / cosine, add in
                          batches of the client's max batch size;
                lancedb   create_table from one Arrow table, create_index(IVF_HNSW_SQ, cosine,
                          m=16, ef_construction=200), searched with every partition probed and an
                          f32 refine (as in `bench/compare ingest`);
       single   the search knob (ef; Chroma's search_ef) is raised until recall@10 >= 0.95 on the
                queries, then single-query QPS (one call per query, Python loop) at that knob;
       batch    the same knob, all queries in one call where the API has one (Quiver: a 2-D
                array, run in parallel in Rust; FAISS: search(Q); Chroma: query_embeddings=Q);
                LanceDB has no batch vector search, so its batch figure is its loop;
       filtered bucket == 0 (1%): the knob raised until recall@10 >= 0.95 against exact top-10
                over the matching rows (numpy), or to its largest value; QPS and recall;
  4. a table and Quiver / peer ratios per figure.

Threads: every engine uses its defaults (all cores) for ingest and batch; single queries are one
call at a time. Peers live only here: nothing of them goes into Quiver.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from _common import (HERE, REPO, CompareError, cached_venv, entry, logger, mark_venv_ready,
                     quiver_bin, run_checked, run_json)
from compare_ingest import LANCE_REFINE_FACTOR, LANCE_ROWS_PER_PARTITION, PEER_REQUIREMENTS

log = logger("python")
ENGINES = ("quiver", "faiss", "chroma", "lancedb")
DATASETS = ("scifact", "glove")
REQUIREMENTS = PEER_REQUIREMENTS + ["maturin==1.16.0"]
KNOBS = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
TARGET = 0.95
M, EFC = 16, 200


# ---------------------------------------------------------------- venv and the Quiver wheel


def venv_dir(env="QUIVER_BENCH_PYTHON_VENV", name="bench-python-venv"):
    d = os.environ.get(env) or os.path.join("~", ".cache", "quiver", name)
    return os.path.abspath(os.path.expanduser(d))


def ensure_venv(d=None, requirements=REQUIREMENTS, log=log):
    """The python of venv `d` holding `requirements` and a fresh release wheel of python/."""
    d = d or venv_dir()
    py, ready = cached_venv(d, requirements, log)
    if not ready:
        log(f"installing {' '.join(requirements)} into {d} (a few minutes)")
        run_checked([py, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                     *requirements], "pip install")
        mark_venv_ready(d, requirements)
    out = tempfile.mkdtemp(prefix="quiver-wheel-")
    try:
        log("building the Quiver wheel (maturin build --release; the engine's release build is "
            "shared with the workspace target dir)")
        run_checked([os.path.join(d, "bin", "maturin"), "build", "--release", "--manifest-path",
                     os.path.join(REPO, "python", "Cargo.toml"), "--out", out], "maturin build")
        wheels = [os.path.join(out, w) for w in os.listdir(out) if w.endswith(".whl")]
        if len(wheels) != 1:
            raise CompareError(f"maturin built {wheels}")
        run_checked([py, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps",
                     "--force-reinstall", wheels[0]], "pip install the Quiver wheel")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return py


# ---------------------------------------------------------------- engines (venv side)


def _log(msg):
    print(f"[peer] {msg}", file=sys.stderr, flush=True)


class Quiver:
    knob_name = "ef"

    def __init__(self, workdir, base, buckets):
        import quiver

        self.version = quiver.__version__
        db = quiver.connect(os.path.join(workdir, "quiver"))
        schema = {"fields": {"emb": {"type": "dense", "dim": base.shape[1], "metric": "cosine",
                                     "index": {"type": "hnsw", "m": M, "ef_construction": EFC}},
                             "bucket": {"type": "integer"}}}
        self.col = db.create_collection("bench", schema)
        ids = list(range(len(base)))
        self.col.bulk_load(ids, [{"bucket": int(b)} for b in buckets], {"emb": base},
                           segment_rows=len(base))
        self.ef = 64

    def set_knob(self, v):
        self.ef = v

    def one(self, q, flt=None):
        return self.col.search(q, k=10, ef=self.ef, with_payload=False, filter=flt).ids

    def batch(self, qs):
        return [h.ids for h in self.col.search(qs, k=10, ef=self.ef, with_payload=False)]

    filter_eq0 = {"field": "bucket", "eq": 0}


class Faiss:
    knob_name = "efSearch"

    def __init__(self, workdir, base, buckets):
        import faiss
        import numpy as np

        self.faiss, self.version = faiss, faiss.__version__
        self.index = faiss.IndexHNSWFlat(base.shape[1], M, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = EFC
        self.index.add(base)
        self.sel = faiss.IDSelectorBatch(np.flatnonzero(buckets == 0).astype(np.int64))
        self.ef = 64

    def set_knob(self, v):
        self.ef = v
        self.index.hnsw.efSearch = v

    def one(self, q, flt=None):
        if flt is None:
            _, labels = self.index.search(q[None, :], 10)
        else:
            params = self.faiss.SearchParametersHNSW(sel=self.sel, efSearch=self.ef)
            _, labels = self.index.search(q[None, :], 10, params=params)
        return [int(x) for x in labels[0] if x >= 0]

    def batch(self, qs):
        _, labels = self.index.search(qs, 10)
        return [[int(x) for x in row if x >= 0] for row in labels]

    filter_eq0 = "bucket == 0"


class Chroma:
    knob_name = "hnsw:search_ef"

    def __init__(self, workdir, base, buckets):
        import chromadb
        from chromadb.config import Settings

        self.version = chromadb.__version__
        self.client = chromadb.PersistentClient(path=os.path.join(workdir, "chroma"),
                                                settings=Settings(anonymized_telemetry=False))
        self.meta = {"hnsw:space": "cosine", "hnsw:M": M, "hnsw:construction_ef": EFC}
        self.col = self.client.create_collection("bench", metadata=self.meta,
                                                 embedding_function=None)
        step = int(self.client.get_max_batch_size())
        for s in range(0, len(base), step):
            e = min(s + step, len(base))
            self.col.add(ids=[str(i) for i in range(s, e)], embeddings=base[s:e],
                         metadatas=[{"bucket": int(b)} for b in buckets[s:e]])

    def set_knob(self, v):
        # search_ef is a collection setting: modified in place (no rebuild).
        self.col.modify(configuration={"hnsw": {"ef_search": v}})

    def one(self, q, flt=None):
        r = self.col.query(query_embeddings=q[None, :], n_results=10, include=[],
                           where=flt)
        return [int(x) for x in r["ids"][0]]

    def batch(self, qs):
        r = self.col.query(query_embeddings=qs, n_results=10, include=[])
        return [[int(x) for x in row] for row in r["ids"]]

    filter_eq0 = {"bucket": 0}


class Lance:
    knob_name = "ef"

    def __init__(self, workdir, base, buckets):
        import lancedb
        import numpy as np
        import pyarrow as pa
        from lancedb.index import BTree, HnswSq

        self.version = lancedb.__version__
        n, d = base.shape
        db = lancedb.connect(os.path.join(workdir, "lancedb"))
        vec = pa.FixedSizeListArray.from_arrays(pa.array(base.reshape(-1)), d)
        tbl = pa.Table.from_arrays([pa.array(np.arange(n, dtype=np.int64)), vec,
                                    pa.array(buckets.astype(np.int64))],
                                   names=["id", "vector", "bucket"])
        self.table = db.create_table("bench", data=tbl)
        self.partitions = max(1, round(n / LANCE_ROWS_PER_PARTITION))
        self.table.create_index("vector", config=HnswSq(
            distance_type="cosine", num_partitions=self.partitions, m=M, ef_construction=EFC))
        self.table.create_index("bucket", config=BTree())
        self.ef = 64

    def set_knob(self, v):
        # Lance refuses an ef below the candidates it refines (limit x refine_factor).
        self.ef = max(v, 10 * LANCE_REFINE_FACTOR)

    def one(self, q, flt=None):
        s = (self.table.search(q, vector_column_name="vector").distance_type("cosine")
             .nprobes(self.partitions).refine_factor(LANCE_REFINE_FACTOR).ef(self.ef))
        if flt is not None:
            s = s.where(flt, prefilter=True)
        return s.limit(10).select(["id", "_distance"]).to_arrow()["id"].to_pylist()

    def batch(self, qs):
        return [self.one(q) for q in qs]

    filter_eq0 = "bucket = 0"


ENGINE_CLASSES = {"quiver": Quiver, "faiss": Faiss, "chroma": Chroma, "lancedb": Lance}


def _recall(got, truth):
    return sum(len(set(g[:10]) & set(t[:10])) for g, t in zip(got, truth)) / (10.0 * len(truth))


def _timed(fn, reps=3):
    """(best seconds over `reps` runs, last result)."""
    best, out = float("inf"), None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _sweep(engine, queries, truth, flt=None):
    """The smallest knob reaching recall@10 >= TARGET (or the largest), with its recall and
    single-query QPS."""
    tried = []
    for v in KNOBS:
        engine.set_knob(v)
        got = [engine.one(q, flt) for q in queries]
        r = _recall(got, truth)
        tried.append({"knob": v, "recall_at_10": round(r, 4)})
        _log(f"  {'filtered ' if flt is not None else ''}knob {v}: recall@10 {r:.3f}")
        if r >= TARGET:
            break
    secs, got = _timed(lambda: [engine.one(q, flt) for q in queries])
    return {"knob": tried[-1]["knob"], "recall_at_10": round(_recall(got, truth), 4),
            "qps": round(len(queries) / secs, 1), "reached": tried[-1]["recall_at_10"] >= TARGET,
            "tried": tried}


def peer_main(argv):
    """Venv side: `python compare_python.py _peer ENGINE SPEC_JSON` -> one JSON line."""
    import numpy as np

    engine_name, spec = argv[0], json.loads(argv[1])
    base = np.ascontiguousarray(np.load(spec["base"]), dtype=np.float32)
    queries = np.ascontiguousarray(np.load(spec["queries"]), dtype=np.float32)[: spec["queries_n"]]
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.load(spec["gt"])[: len(queries), :10].tolist()
    buckets = np.arange(len(base)) % 100
    rows = np.flatnonzero(buckets == 0)
    sims = queries @ base[rows].T
    ftruth = [rows[np.argsort(-s, kind="stable")[:10]].tolist() for s in sims]
    workdir = tempfile.mkdtemp(prefix=f"quiver-bench-python-{engine_name}-")
    try:
        cls = ENGINE_CLASSES[engine_name]
        _log(f"{engine_name}: ingest {base.shape[0]} x {base.shape[1]}")
        t = time.perf_counter()
        engine = cls(workdir, base, buckets)
        ingest_s = time.perf_counter() - t
        _log(f"{engine_name}: searchable after {ingest_s:.1f}s; sweeping {cls.knob_name}")
        single = _sweep(engine, queries, truth)
        engine.set_knob(single["knob"])
        secs, got = _timed(lambda: engine.batch(queries))
        batch = {"knob": single["knob"], "qps": round(len(queries) / secs, 1),
                 "recall_at_10": round(_recall(got, truth), 4)}
        filtered = _sweep(engine, queries, ftruth, cls.filter_eq0)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({"engine": engine_name, "version": engine.version, "knob": cls.knob_name,
                      "ingest_s": round(ingest_s, 3),
                      "ingest_rows_per_s": round(len(base) / ingest_s, 1), "single": single,
                      "batch": batch, "filtered": filtered, "n": len(base), "dim": base.shape[1],
                      "queries": len(queries)}))
    return 0


# ---------------------------------------------------------------- orchestration


def prepare(qbin, datasets):
    """{name: {"base", "queries", "gt"}}: the .npy files `quiver bench codecs --prepare-only`
    caches (GloVe split as `bench ann` splits it; SciFact embedded with all-MiniLM-L6-v2)."""
    prep = run_json([qbin, "bench", "codecs", "--prepare-only", "--json", "--datasets",
                     ",".join(datasets)], "quiver bench codecs --prepare-only", log,
                    cwd=REPO)
    out = {}
    for name in datasets:
        # Named by quiver bench codecs: "scifact-minilm", "glove-..."
        spec = next((v for k, v in (prep.get("datasets") or {}).items() if k.startswith(name)), {})
        for key in ("base", "queries", "gt"):
            if not spec.get(key) or not os.path.exists(spec[key]):
                raise CompareError(f"{name}: no usable {key!r} in {str(prep)[:300]}")
        out[name] = spec
    return out


def ratio(a, b):
    return round(a / b, 2) if a and b else None


def summarise(results):
    """Quiver / peer ratios per data set and figure (ingest as rows/s)."""
    out = {}
    for ds, engines in results.items():
        q = engines.get("quiver")
        if not q or "error" in q:
            continue
        for peer, r in engines.items():
            if peer == "quiver" or "error" in r:
                continue
            out.setdefault(ds, {})[peer] = {
                "ingest": ratio(q["ingest_rows_per_s"], r["ingest_rows_per_s"]),
                "single_qps": ratio(q["single"]["qps"], r["single"]["qps"]),
                "batch_qps": ratio(q["batch"]["qps"], r["batch"]["qps"]),
                "filtered_qps": ratio(q["filtered"]["qps"], r["filtered"]["qps"]),
            }
    return out


def print_table(report):
    for ds, engines in report["results"].items():
        print(f"\n{ds}: {report['data'][ds]['n']} x {report['data'][ds]['dim']}, "
              f"{report['data'][ds]['queries']} queries, recall target {TARGET}")
        print(f"{'engine':<9} {'version':<9} {'ingest s':>9} {'rows/s':>10} "
              f"{'knob':>5} {'r@10':>6} {'1-query QPS':>11} {'batch QPS':>10} "
              f"{'filt knob':>9} {'filt r@10':>9} {'filt QPS':>9}")
        for name, r in engines.items():
            if "error" in r:
                print(f"{name:<9} failed: {r['error']}")
                continue
            s, b, f = r["single"], r["batch"], r["filtered"]
            # "!": the largest knob tried stayed below the recall target.
            sk = f"{s['knob']}{'' if s['reached'] else '!'}"
            fk = f"{f['knob']}{'' if f['reached'] else '!'}"
            print(f"{name:<9} {r['version']:<9} {r['ingest_s']:>9.2f} {r['ingest_rows_per_s']:>10.0f} "
                  f"{sk:>5} {s['recall_at_10']:>6.3f} {s['qps']:>11.1f} {b['qps']:>10.1f} "
                  f"{fk:>9} {f['recall_at_10']:>9.3f} {f['qps']:>9.1f}")
        if any(not r[k]["reached"] for r in engines.values() if "error" not in r
               for k in ("single", "filtered")):
            print(f"  !: recall@10 stayed below {TARGET} up to the largest knob ({KNOBS[-1]})")
        for peer, rs in report["ratios"].get(ds, {}).items():
            print(f"  quiver / {peer}: " + ", ".join(f"{k} {v}x" for k, v in rs.items()))


def build_parser():
    p = argparse.ArgumentParser(prog="bench/compare python", description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS), help="scifact,glove")
    p.add_argument("--engines", default=",".join(ENGINES), help="quiver,faiss,chroma,lancedb")
    p.add_argument("--queries", type=int, default=1000, help="queries per data set (at most)")
    p.add_argument("--peer-timeout", type=float, default=3600)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return p


def main(argv):
    args = build_parser().parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d]
    engines = [e for e in args.engines.split(",") if e]
    for x, known in [(datasets, DATASETS), (engines, ENGINES)]:
        bad = [v for v in x if v not in known]
        if bad:
            print(f"bench/compare python: unknown {bad} (known: {', '.join(known)})", file=sys.stderr)
            return 2
    try:
        py = ensure_venv()
        qbin = quiver_bin(log)
        data = prepare(qbin, datasets)
        results, meta = {}, {}
        for ds, spec in data.items():
            peer_spec = {"base": spec["base"], "queries": spec["queries"], "gt": spec["gt"],
                         "queries_n": args.queries}
            for e in engines:
                try:
                    r = run_json([py, os.path.join(HERE, "compare_python.py"), "_peer", e,
                                  json.dumps(peer_spec)], f"{e} on {ds}", log,
                                 timeout=args.peer_timeout)
                except CompareError as err:
                    log(str(err))
                    r = {"error": str(err)}
                results.setdefault(ds, {})[e] = r
                if "n" in r:
                    meta[ds] = {"n": r["n"], "dim": r["dim"], "queries": r["queries"]}
    except CompareError as e:
        print(f"bench/compare python: {e}", file=sys.stderr)
        return 1
    report = {"results": results, "ratios": summarise(results), "data": meta,
              "cpus": os.cpu_count(), "target_recall": TARGET}
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    entry(main, peer_main)
