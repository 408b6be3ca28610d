"""`bench/compare ingest`: Quiver streamed ingest against hnswlib, FAISS, Chroma and LanceDB.

One invocation:
  1. `quiver bench ingest --prepare-only --json` writes (once, cached) the base, query and
     ground-truth .npy files: `--source random` (clustered, normalised, 384-d by default) or
     `--source glove50` (GloVe-6B-50d, used whole), L2-normalised so inner product == cosine,
     exact top-100;
  2. `quiver bench ingest --json` streams the base into a fresh collection in batches of
     `--batch-size` (background seals and merges running) and reports throughput, per-tenth
     throughput, acknowledgement latency, peak RSS and recall@10 at `--ef`;
  3. each peer streams the very same base.npy in the same batches, each in its own process of a
     private virtualenv (${QUIVER_BENCH_INGEST_VENV:-~/.cache/quiver/bench-ingest-venv}, made on
     first use), with the same m / ef_construction / ef where the peer has them, timed the same
     way (every add call is one acknowledgement), then recall@10 on the same queries:
       hnswlib   Index(space="ip"), init_index(max_elements=N), add_items per batch, set_ef(EF);
       faiss     IndexHNSWFlat(D, M, METRIC_INNER_PRODUCT), efConstruction, add per batch,
                 efSearch = EF;
       chroma    PersistentClient in a temporary directory, hnsw:space cosine / hnsw:M /
                 hnsw:construction_ef / hnsw:search_ef, add(ids, embeddings) per batch (split
                 into several calls inside one acknowledgement when the batch exceeds the
                 client's max batch size), query n_results=10;
       lancedb   connect to a temporary directory, create_table from the first batch (int64 id,
                 fixed-size-list<float32>[D] vector), table.add per batch; after the load
                 create_index(IVF_HNSW_SQ, cosine, m = M, ef_construction = EFC) is timed as
                 index_build_seconds; searched with every partition probed, ef = EF and an
                 exact f32 refine (IVF_PQ instead where IVF_HNSW_SQ is missing);
     a peer that fails or runs past `--peer-timeout` is reported and the others go on;
  4. a table and ratios: Quiver docs/s / peer docs/s (loading alone, and to searchable: Quiver's
     settle or the peer's index build added), ack p99 and max, peak RSS, recall@10.

The orchestrating part uses only the standard library and runs under any python3; the peer part
(`_peer` sub-command) runs under the venv's python. Peers live only here: nothing of them goes
into the Quiver binary.
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time

from _common import (HERE, REPO, CompareError, cached_venv, entry, logger, run_json,
                     mark_venv_ready, quiver_bin, run_checked)
from compare_ann import _load_data, _loadavg, fmt

# Pinned peer stack (installs on CPython 3.11 / x86_64 Linux: every package from wheels except
# hnswlib 0.8.0, which builds from its sdist with g++). chromadb and lancedb pull their own
# dependencies (onnxruntime, tokenizers, grpcio, ...) unpinned.
PEER_REQUIREMENTS = [
    "numpy==2.4.6",
    "hnswlib==0.8.0",
    "faiss-cpu==1.15.1",
    "chromadb==1.5.9",
    "lancedb==0.40.0",
    "pyarrow==26.0.1",
]
PEERS = ("hnswlib", "faiss", "chroma", "lancedb")
SOURCES = ("random", "glove50")
DEFAULT_COUNT, QUICK_COUNT = 1_000_000, 20_000
DEFAULT_QUERIES, DEFAULT_DIM, DEFAULT_SEED = 100, 384, 42
DEFAULT_BATCH, DEFAULT_M, DEFAULT_EF_CONSTRUCTION, DEFAULT_EF = 1000, 16, 100, 64
DEFAULT_MUTABLE_MAX_ROWS = 20_000
DEFAULT_PEER_TIMEOUT = 7200
# LanceDB: rows per IVF partition of IVF_HNSW_SQ (each partition is one HNSW graph; every one is
# probed), and the exact re-rank depth (limit x refine_factor candidates re-scored in f32).
LANCE_ROWS_PER_PARTITION = 250_000
LANCE_REFINE_FACTOR = 2


log = logger("ingest")


# ---------------------------------------------------------------- venv


def venv_dir():
    d = (os.environ.get("QUIVER_BENCH_INGEST_VENV")
         or os.path.join("~", ".cache", "quiver", "bench-ingest-venv"))
    return os.path.abspath(os.path.expanduser(d))


def ensure_venv():
    """Make (or reuse) the peer virtualenv and return its python."""
    d = venv_dir()
    py, ready = cached_venv(d, PEER_REQUIREMENTS, log)
    if ready:
        return py
    log(f"installing {' '.join(PEER_REQUIREMENTS)} into {d} "
        "(hnswlib compiles; chromadb and lancedb are large: a few minutes)")
    run_checked([py, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                 *PEER_REQUIREMENTS], "pip install")
    probe = ("import numpy, hnswlib, faiss, chromadb, lancedb, pyarrow; "
             "print(faiss.__version__, chromadb.__version__, lancedb.__version__)")
    run_checked([py, "-c", probe], "importing the peers in the virtualenv")
    mark_venv_ready(d, PEER_REQUIREMENTS)
    return py


# ---------------------------------------------------------------- peers (venv side)


def _peer_log(msg):
    print(f"[peer] {msg}", file=sys.stderr, flush=True)


def _proc_status_mib(field):
    """A `/proc/self/status` field (VmRSS, VmHWM) in MiB; 0 where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def _recall_at_10(labels, gt10):
    hits = 0
    for row, truth in zip(labels, gt10.tolist()):
        hits += len(set(int(x) for x in list(row)[:10]) & set(truth))
    return hits / (10.0 * len(gt10))


def _percentile_ms(sorted_s, p):
    # As `quiver bench ingest`: the element at round((n - 1) * p) of the sorted latencies.
    if not sorted_s:
        return 0.0
    i = int((len(sorted_s) - 1) * p + 0.5)
    return sorted_s[min(i, len(sorted_s) - 1)] * 1e3


def _stream(n, batch_size, make, add):
    """Feed rows [0, n) in batches of `batch_size`, timed as `quiver bench ingest` times its
    upserts: `make(start, end)` builds a batch's payload (counted in the total and per-tenth
    wall time, not in the acknowledgement), `add(b, payload)` is the acknowledged call.

    Returns seconds, docs_per_s, tenths_docs_per_s, last_over_first and ack_ms."""
    batches = -(-n // batch_size)
    acks = []
    tenth_start = [None] * 11
    tenth_docs = [0] * 10
    progress_every = max(1, batches // 10)
    t0 = time.perf_counter()
    for b in range(batches):
        tenth = b * 10 // batches
        if tenth_start[tenth] is None:
            tenth_start[tenth] = time.perf_counter()
        start, end = b * batch_size, min((b + 1) * batch_size, n)
        payload = make(start, end)
        t = time.perf_counter()
        add(b, payload)
        acks.append(time.perf_counter() - t)
        tenth_docs[tenth] += end - start
        if (b + 1) % progress_every == 0 or b + 1 == batches:
            el = time.perf_counter() - t0
            _peer_log(f"  {end}/{n} rows, {el:.1f}s, {end / max(el, 1e-9):.0f} docs/s")
    seconds = time.perf_counter() - t0
    tenth_start[10] = time.perf_counter()
    tenths = []
    for i in range(10):
        s = tenth_start[i]
        e = next((x for x in tenth_start[i + 1:] if x is not None), None)
        tenths.append(0.0 if s is None or e is None else tenth_docs[i] / max(e - s, 1e-9))
    acks.sort()
    return {
        "seconds": round(seconds, 4),
        "docs_per_s": round(n / max(seconds, 1e-9), 1),
        "tenths_docs_per_s": [round(x, 1) for x in tenths],
        "last_over_first": round(tenths[9] / max(tenths[0], 1e-9), 4),
        "ack_ms": {"p50": round(_percentile_ms(acks, 0.5), 3),
                   "p99": round(_percentile_ms(acks, 0.99), 3),
                   "max": round(_percentile_ms(acks, 1.0), 3)},
        "batches": batches,
    }


def _timed_search(search, queries, gt10):
    """recall@10 of `search(queries) -> labels`, and the first query's latency on its own (what
    a reader waits for right after the load: lazy index work shows up here)."""
    t = time.perf_counter()
    search(queries[:1])
    first_ms = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    labels = search(queries)
    search_s = time.perf_counter() - t
    return {"recall_at_10": round(_recall_at_10(labels, gt10), 4),
            "first_query_ms": round(first_ms, 3),
            "search_seconds": round(search_s, 4)}


def _run_hnswlib(spec, base, queries, gt10):
    import hnswlib
    from importlib.metadata import version

    n, d = base.shape
    index = hnswlib.Index(space="ip", dim=d)
    index.init_index(max_elements=n, M=spec["m"], ef_construction=spec["ef_construction"],
                     random_seed=100)
    ids = list(range(n))

    def add(_b, payload):
        index.add_items(payload[0], payload[1], num_threads=-1)  # all cores

    res = _stream(n, spec["batch_size"], lambda s, e: (base[s:e], ids[s:e]), add)
    index.set_ef(spec["ef"])

    def search(q):
        labels, _ = index.knn_query(q, k=10, num_threads=-1)
        return labels.tolist()

    res.update(_timed_search(search, queries, gt10))
    res.update({"engine": "hnswlib", "version": version("hnswlib"), "index_build_seconds": None,
                "disk_bytes": None, "threads": os.cpu_count(),
                "search": {"ef": spec["ef"]},
                "config": {"space": "ip", "M": spec["m"], "ef_construction": spec["ef_construction"],
                           "max_elements": n}})
    return res


def _run_faiss(spec, base, queries, gt10):
    import faiss

    n, d = base.shape
    index = faiss.IndexHNSWFlat(d, spec["m"], faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = spec["ef_construction"]
    threads = faiss.omp_get_max_threads()  # OpenMP default: all cores

    res = _stream(n, spec["batch_size"], lambda s, e: base[s:e], lambda _b, x: index.add(x))
    index.hnsw.efSearch = spec["ef"]

    def search(q):
        _, labels = index.search(q, 10)
        return labels.tolist()

    res.update(_timed_search(search, queries, gt10))
    res.update({"engine": "faiss", "version": faiss.__version__, "index_build_seconds": None,
                "disk_bytes": None, "threads": threads,
                "search": {"efSearch": spec["ef"]},
                "config": {"index": "IndexHNSWFlat", "metric": "METRIC_INNER_PRODUCT",
                           "M": spec["m"], "efConstruction": spec["ef_construction"]}})
    return res


def _run_chroma(spec, base, queries, gt10, workdir):
    import chromadb
    from chromadb.config import Settings

    n, d = base.shape
    client = chromadb.PersistentClient(path=os.path.join(workdir, "chroma"),
                                       settings=Settings(anonymized_telemetry=False))
    metadata = {"hnsw:space": "cosine", "hnsw:M": spec["m"],
                "hnsw:construction_ef": spec["ef_construction"], "hnsw:search_ef": spec["ef"]}
    coll = client.create_collection("ingest", metadata=metadata, embedding_function=None)
    try:
        max_batch = int(client.get_max_batch_size())
    except AttributeError:  # older clients
        max_batch = int(getattr(client, "max_batch_size", 0) or 0)
    if max_batch <= 0:
        max_batch = spec["batch_size"]
    split = -(-spec["batch_size"] // max_batch)
    if split > 1:
        _peer_log(f"chroma: max batch size {max_batch}: each batch of {spec['batch_size']} "
                  f"goes in {split} add calls (one acknowledgement)")

    def make(s, e):
        return [str(i) for i in range(s, e)], base[s:e]

    def add(_b, payload):
        ids, emb = payload
        for j in range(0, len(ids), max_batch):
            coll.add(ids=ids[j:j + max_batch], embeddings=emb[j:j + max_batch])

    res = _stream(n, spec["batch_size"], make, add)
    t = time.perf_counter()
    stored = coll.count()
    count_s = time.perf_counter() - t
    if stored != n:
        raise CompareError(f"chroma holds {stored} rows after adding {n}")

    def search(q):
        r = coll.query(query_embeddings=q, n_results=10, include=["distances"])
        return [[int(x) for x in row] for row in r["ids"]]

    res.update(_timed_search(search, queries, gt10))
    config = None
    try:
        cfg = getattr(coll, "configuration_json", None) or getattr(coll, "configuration", None)
        config = json.loads(json.dumps(cfg, default=str)) if cfg is not None else None
    except Exception:  # informative only
        config = None
    res.update({"engine": "chroma", "version": chromadb.__version__, "index_build_seconds": None,
                "count_seconds": round(count_s, 4), "max_batch_size": max_batch,
                "adds_per_batch": split, "disk_bytes": _dir_bytes(os.path.join(workdir, "chroma")),
                "threads": os.cpu_count(), "search": {"hnsw:search_ef": spec["ef"]},
                "config": {"metadata": metadata, "collection": config}})
    return res


def _lance_sub_vectors(d):
    """IVF_PQ sub-vectors: the divisor of d nearest d / 8 (8-dim sub-vectors where d allows)."""
    divisors = [s for s in range(1, d + 1) if d % s == 0]
    return min(divisors, key=lambda s: (abs(s - d / 8.0), -s))


def _run_lancedb(spec, base, queries, gt10, workdir):
    import lancedb
    import pyarrow as pa

    n, d = base.shape
    db = lancedb.connect(os.path.join(workdir, "lancedb"))
    schema = pa.schema([pa.field("id", pa.int64()),
                        pa.field("vector", pa.list_(pa.float32(), d))])
    holder = {}

    def make(s, e):
        import numpy as np

        vec = pa.FixedSizeListArray.from_arrays(pa.array(base[s:e].reshape(-1)), d)
        ids = pa.array(np.arange(s, e, dtype=np.int64))
        return pa.Table.from_arrays([ids, vec], schema=schema)

    def add(b, tbl):
        if b == 0:
            holder["t"] = db.create_table("ingest", data=tbl)
        else:
            holder["t"].add(tbl)

    res = _stream(n, spec["batch_size"], make, add)
    table = holder["t"]
    stored = table.count_rows()
    if stored != n:
        raise CompareError(f"lancedb holds {stored} rows after adding {n}")

    try:
        from lancedb.index import HnswSq
    except ImportError:
        HnswSq = None
    if HnswSq is not None:
        partitions = max(1, round(n / LANCE_ROWS_PER_PARTITION))
        cfg = HnswSq(distance_type="cosine", num_partitions=partitions, m=spec["m"],
                     ef_construction=spec["ef_construction"])
        index_desc = {"index_type": "IVF_HNSW_SQ", "distance_type": "cosine",
                      "num_partitions": partitions, "m": spec["m"],
                      "ef_construction": spec["ef_construction"]}
        search_desc = {"nprobes": partitions, "ef": spec["ef"],
                       "refine_factor": LANCE_REFINE_FACTOR}
    else:
        from lancedb.index import IvfPq

        partitions = max(1, min(4096, round(math.sqrt(n))))
        sub = _lance_sub_vectors(d)
        cfg = IvfPq(distance_type="cosine", num_partitions=partitions, num_sub_vectors=sub)
        index_desc = {"index_type": "IVF_PQ", "distance_type": "cosine",
                      "num_partitions": partitions, "num_sub_vectors": sub}
        search_desc = {"nprobes": max(1, partitions // 10), "refine_factor": 10}
    _peer_log(f"lancedb: create_index {index_desc}")
    t = time.perf_counter()
    table.create_index("vector", config=cfg)
    build_s = time.perf_counter() - t
    _peer_log(f"lancedb: index built in {build_s:.1f}s")
    indices = None
    try:  # informative only: what lance says it built
        indices = [{"name": getattr(i, "name", None), "index_type": getattr(i, "index_type", None)}
                   for i in table.list_indices()]
        for i in indices:
            st = table.index_stats(i["name"])
            for key in ("num_indexed_rows", "num_unindexed_rows"):
                i[key] = getattr(st, key, None)
    except Exception:
        pass

    def search(q):
        out = []
        for v in q:
            s = (table.search(v, vector_column_name="vector").distance_type("cosine")
                 .nprobes(search_desc["nprobes"]).refine_factor(search_desc["refine_factor"]))
            if "ef" in search_desc:
                s = s.ef(search_desc["ef"])
            # `_distance` named so that lance does not warn about projecting it implicitly.
            out.append(s.limit(10).select(["id", "_distance"]).to_arrow()["id"].to_pylist())
        return out

    res.update(_timed_search(search, queries, gt10))
    res.update({"engine": "lancedb", "version": lancedb.__version__,
                "index_build_seconds": round(build_s, 4),
                "disk_bytes": _dir_bytes(os.path.join(workdir, "lancedb")),
                "threads": os.cpu_count(), "search": search_desc,
                "config": {"index": index_desc, "indices": indices}})
    return res


def peer_main(argv):
    """Venv side: `python compare_ingest.py _peer ENGINE SPEC_JSON` -> one JSON line on stdout.
    Whatever the libraries print goes to stderr; only the result goes to stdout."""
    import contextlib
    import tempfile

    engine, spec = argv[0], json.loads(argv[1])
    result_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # library chatter on fd 1 -> stderr
    sys.stdout = sys.stderr
    base, queries, gt10 = _load_data(spec)
    rss_before = _proc_status_mib("VmRSS")
    _peer_log(f"{engine}: base {base.shape}, queries {queries.shape}, batch {spec['batch_size']}, "
              f"m={spec['m']}, ef_construction={spec['ef_construction']}, ef={spec['ef']}")
    fns = {"hnswlib": _run_hnswlib, "faiss": _run_faiss}
    # The orchestrator hands over a scratch directory it removes itself (also after a timeout
    # kill); run by hand, the peer makes its own.
    with contextlib.ExitStack() as stack:
        td = spec.get("workdir") or stack.enter_context(
            tempfile.TemporaryDirectory(prefix=f"quiver-compare-ingest-{engine}-"))
        if engine in fns:
            result = fns[engine](spec, base, queries, gt10)
        elif engine == "chroma":
            result = _run_chroma(spec, base, queries, gt10, td)
        elif engine == "lancedb":
            result = _run_lancedb(spec, base, queries, gt10, td)
        else:
            raise CompareError(f"unknown peer {engine!r}")
        result["rss_peak_mib"] = round(max(_proc_status_mib("VmHWM"), _proc_status_mib("VmRSS")), 1)
    result.update({"count": int(base.shape[0]), "dim": int(base.shape[1]),
                   "batch_size": spec["batch_size"], "rss_before_mib": round(rss_before, 1),
                   "dataset_mib": round(base.nbytes / (1 << 20), 1)})
    _peer_log(f"{engine}: {result['docs_per_s']:.0f} docs/s, ack p99 {result['ack_ms']['p99']:.1f} ms, "
              f"RSS peak {result['rss_peak_mib']:.0f} MiB, recall@10 {result['recall_at_10']:.4f}")
    result_out.write(json.dumps(result) + "\n")
    result_out.flush()
    return 0


# ---------------------------------------------------------------- summary


def ready_seconds(res):
    """Load time plus what must still happen before the data is searchable through the index:
    Quiver's settle (background seals/merges), a peer's index build."""
    if res.get("seconds") is None:
        return None
    extra = res.get("settle_seconds") or 0.0
    extra += res.get("index_build_seconds") or 0.0
    return res["seconds"] + extra


def _ratio(a, b, nd=3):
    if a is None or b is None or b == 0:
        return None
    return round(a / b, nd)


def summarise(results):
    """results: engine -> result dict (quiver first); ratios of Quiver against each peer."""
    q = results.get("quiver")
    ratios = {}
    if q is None:
        return ratios
    q_ready = ready_seconds(q)
    q_ready_dps = q["count"] / q_ready if q_ready else None
    for eng, r in results.items():
        if eng == "quiver":
            continue
        r_ready = ready_seconds(r)
        r_ready_dps = r["count"] / r_ready if r_ready else None
        qa, ra = q.get("ack_ms") or {}, r.get("ack_ms") or {}
        rec_q, rec_r = q.get("recall_at_10"), r.get("recall_at_10")
        ratios[eng] = {
            "docs_per_s": _ratio(q.get("docs_per_s"), r.get("docs_per_s")),
            "ready_docs_per_s": _ratio(q_ready_dps, r_ready_dps),
            "ack_p99": _ratio(qa.get("p99"), ra.get("p99")),
            "ack_max": _ratio(qa.get("max"), ra.get("max")),
            "rss_peak": _ratio(q.get("rss_peak_mib"), r.get("rss_peak_mib")),
            "recall_at_10_delta": (round(rec_q - rec_r, 4)
                                   if rec_q is not None and rec_r is not None else None),
        }
    return ratios


# ---------------------------------------------------------------- output


def print_table(report, out=sys.stdout):
    p = lambda s="": print(s, file=out)
    d = report["data"]
    p(f"Ingest comparison: {d.get('source')} {d.get('count')} x {d.get('dim')} cosine, batches of "
      f"{d['batch_size']}, m={d['m']}, ef_construction={d['ef_construction']}, ef={d['ef']}, "
      f"{d.get('n_queries')} queries; {d.get('cpus')} cpus")
    p()
    p(f"{'engine':<9}{'docs/s':>10}{'last/1st':>9}{'ack p50':>9}{'p99':>9}{'max':>9}"
      f"{'settle/idx':>11}{'ready d/s':>11}{'RSS MiB':>9}{'recall@10':>10}")
    for eng, r in report["engines"].items():
        ack = r.get("ack_ms") or {}
        extra = r.get("settle_seconds") if eng == "quiver" else r.get("index_build_seconds")
        rs = ready_seconds(r)
        p(f"{eng:<9}{fmt(r.get('docs_per_s'), '.0f'):>10}{fmt(r.get('last_over_first'), '.2f'):>9}"
          f"{fmt(ack.get('p50'), '.1f'):>9}{fmt(ack.get('p99'), '.1f'):>9}"
          f"{fmt(ack.get('max'), '.1f'):>9}{fmt(extra, '.1f'):>11}"
          f"{fmt(r['count'] / rs if rs else None, '.0f'):>11}"
          f"{fmt(r.get('rss_peak_mib'), '.0f'):>9}{fmt(r.get('recall_at_10'), '.4f'):>10}")
    for eng, err in report["failed"].items():
        p(f"{eng:<9}FAILED: {err}")
    p("  (ack in ms per add call; settle/idx: Quiver's background settle or the peer's index "
      "build, s; ready d/s: docs / (load + settle/idx))")
    p()
    p("docs/s per tenth of the batches:")
    for eng, r in report["engines"].items():
        tenths = r.get("tenths_docs_per_s") or []
        p(f"{eng:<9}" + " ".join(f"{t:>7.0f}" for t in tenths))
    if report["ratios"]:
        p()
        p("Quiver against each peer (docs/s: > 1 is Quiver faster; ack, RSS: < 1 is Quiver "
          "lower; recall: Quiver minus peer):")
        p(f"{'peer':<9}{'docs/s':>9}{'ready':>9}{'ack p99':>9}{'ack max':>9}{'RSS':>9}"
          f"{'recall':>9}")
        for eng, r in report["ratios"].items():
            cell = lambda v: "-" if v is None else f"{v:.2f}x"
            p(f"{eng:<9}{cell(r['docs_per_s']):>9}{cell(r['ready_docs_per_s']):>9}"
              f"{cell(r['ack_p99']):>9}{cell(r['ack_max']):>9}{cell(r['rss_peak']):>9}"
              f"{fmt(r['recall_at_10_delta'], '+.4f'):>9}")
    p()
    p("search settings: " + "; ".join(f"{e} {r.get('search')}" for e, r in report["engines"].items()
                                      if r.get("search")))
    if report["peers"]:
        p("peers: " + ", ".join(f"{k} {v}" for k, v in report["peers"].items()))


# ---------------------------------------------------------------- main


def build_parser():
    ap = argparse.ArgumentParser(
        prog="bench/compare ingest",
        description="Quiver streamed ingest vs hnswlib, FAISS IndexHNSWFlat, Chroma and LanceDB "
                    "(same base, same batches, same m / ef_construction / ef where they apply).")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object on stdout instead of the table")
    ap.add_argument("--source", choices=SOURCES, default="random",
                    help="random (clustered, normalised) or glove50 (GloVe-6B-50d, used whole)")
    ap.add_argument("--dim", type=int, default=DEFAULT_DIM,
                    help=f"dimensions of random vectors (default {DEFAULT_DIM})")
    ap.add_argument("--count", type=int, default=None,
                    help=f"base vectors (default {DEFAULT_COUNT:,}; {QUICK_COUNT:,} with --quick; "
                         "glove50 is always used whole, 400,000 less the queries)")
    ap.add_argument("--queries", type=int, default=DEFAULT_QUERIES,
                    help=f"queries for recall@10 (default {DEFAULT_QUERIES})")
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                    help=f"documents per add / upsert call (default {DEFAULT_BATCH})")
    ap.add_argument("--m", type=int, default=DEFAULT_M, help=f"HNSW m (default {DEFAULT_M})")
    ap.add_argument("--ef-construction", type=int, default=DEFAULT_EF_CONSTRUCTION,
                    help=f"HNSW ef_construction (default {DEFAULT_EF_CONSTRUCTION})")
    ap.add_argument("--ef", type=int, default=DEFAULT_EF,
                    help=f"search beam width for recall@10 (default {DEFAULT_EF})")
    ap.add_argument("--mutable-max-rows", type=int, default=DEFAULT_MUTABLE_MAX_ROWS,
                    help=f"Quiver's rows per seal (default {DEFAULT_MUTABLE_MAX_ROWS:,})")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED,
                    help=f"data seed (default {DEFAULT_SEED})")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help=f"comma-separated peers to run (default {','.join(PEERS)}; '' for none)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: --count {QUICK_COUNT:,} unless given (random source)")
    ap.add_argument("--peer-timeout", type=float, default=DEFAULT_PEER_TIMEOUT,
                    help=f"seconds each peer may run before it is killed and reported "
                         f"(default {DEFAULT_PEER_TIMEOUT})")
    ap.add_argument("--peers-only", action="store_true",
                    help="skip `quiver bench ingest` (quiver still prepares the data); no ratios")
    return ap


def main(argv):
    args = build_parser().parse_args(argv)
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    for p in peers:
        if p not in PEERS:
            print(f"bench/compare ingest: unknown peer {p!r} (known: {', '.join(PEERS)})",
                  file=sys.stderr)
            return 2
    for name in ("dim", "queries", "batch_size", "m", "ef_construction", "ef", "mutable_max_rows"):
        if getattr(args, name) < 1:
            print(f"bench/compare ingest: --{name.replace('_', '-')} must be positive",
                  file=sys.stderr)
            return 2
    if args.count is not None and args.count < 1:
        print("bench/compare ingest: --count must be positive", file=sys.stderr)
        return 2
    try:
        report = run(args, peers)
    except CompareError as e:
        print(f"bench/compare ingest: {e}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        print_table(report)
    return 0


def npy_shape(path):
    """The shape in a .npy file's header (standard library only); None if it cannot be read."""
    import ast

    try:
        with open(path, "rb") as f:
            head = f.read(10)
            if head[:6] != b"\x93NUMPY":
                return None
            if head[6] == 1:
                hlen = int.from_bytes(head[8:10], "little")
            else:
                hlen = int.from_bytes(head[8:10] + f.read(2), "little")
            return tuple(ast.literal_eval(f.read(hlen).decode("latin1"))["shape"])
    except (OSError, ValueError, SyntaxError, KeyError, IndexError):
        return None


def dataset_flags(args):
    if args.source == "glove50":
        # `quiver bench ingest` uses GloVe whole and refuses a --count below its size.
        if args.count is not None and args.count < DEFAULT_COUNT:
            log(f"--source glove50 is used whole; ignoring --count {args.count}")
        count = DEFAULT_COUNT
    else:
        count = args.count or (QUICK_COUNT if args.quick else DEFAULT_COUNT)
    return ["--source", args.source, "--dim", str(args.dim), "--count", str(count),
            "--queries", str(args.queries), "--seed", str(args.seed)]


def run(args, peers):
    t_start = time.time()
    load_start = _loadavg()
    if load_start is not None and load_start > 0.5 * (os.cpu_count() or 1):
        log(f"warning: 1-minute load average is {load_start:.1f} on {os.cpu_count()} cpus; "
            "other work on this machine will distort throughput and latency")
    # Peers first checked/installed, so a broken venv fails before the long runs.
    py = ensure_venv() if peers else None
    qbin = quiver_bin(log)
    flags = dataset_flags(args)
    prep = run_json([qbin, "bench", "ingest", "--prepare-only", "--json", *flags],
                    "quiver data preparation", log, cwd=REPO)
    for key in ("base", "queries", "gt"):
        if not prep.get(key) or not os.path.exists(prep[key]):
            raise CompareError(f"quiver --prepare-only gave no usable {key!r}: {prep.get(key)!r}")
    build = ["--batch-size", str(args.batch_size), "--m", str(args.m),
             "--ef-construction", str(args.ef_construction), "--ef", str(args.ef),
             "--mutable-max-rows", str(args.mutable_max_rows)]

    engines, failed, versions = {}, {}, {}
    if not args.peers_only:
        q = run_json([qbin, "bench", "ingest", "--json", *flags, *build], "quiver bench ingest",
                     log, cwd=REPO)
        missing = [k for k in ("count", "seconds", "docs_per_s", "ack_ms") if k not in q]
        if missing:
            raise CompareError(f"quiver bench ingest output lacks {missing}: {str(q)[:300]}")
        engines["quiver"] = q

    spec = {"base": prep["base"], "queries": prep["queries"], "gt": prep["gt"],
            "batch_size": args.batch_size, "m": args.m, "ef_construction": args.ef_construction,
            "ef": args.ef}
    for p in peers:
        log(f"running peer {p} ({prep.get('count')} rows in batches of {args.batch_size}, "
            f"timeout {args.peer_timeout:.0f}s)")
        # Chroma's and LanceDB's files go here ($TMPDIR or /tmp), removed whatever happens.
        work = tempfile.mkdtemp(prefix=f"quiver-compare-ingest-{p}-")
        try:
            res = run_json([py, os.path.join(HERE, "compare_ingest.py"), "_peer", p,
                            json.dumps({**spec, "workdir": work})], f"peer {p}", log,
                           timeout=args.peer_timeout)
        except CompareError as e:
            log(f"{e}; going on with the other peers")
            failed[p] = str(e)
            continue
        finally:
            shutil.rmtree(work, ignore_errors=True)
        versions[p] = res.get("version")
        engines[p] = res

    data = dict(prep)
    qshape = npy_shape(prep["queries"])
    data.update({"source": args.source, "n_queries": qshape[0] if qshape else args.queries,
                 "seed": args.seed,
                 "batch_size": args.batch_size, "m": args.m,
                 "ef_construction": args.ef_construction, "ef": args.ef,
                 "mutable_max_rows": args.mutable_max_rows, "metric": "cosine",
                 "cpus": os.cpu_count(),
                 "loadavg_1m": {"start": load_start, "end": _loadavg()}})
    return {
        "engines": engines,
        "ratios": summarise(engines),
        "failed": failed,
        "peers": versions,
        "data": data,
        "elapsed_s": round(time.time() - t_start, 1),
    }


if __name__ == "__main__":
    entry(main, peer_main)
