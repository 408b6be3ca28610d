"""`bench/compare serve`: `quiver serve` under load, beside Chroma's HTTP server.

One invocation:
  1. `quiver bench ingest --prepare-only` writes (once, cached) `--count` clustered 384-d
     vectors and their queries (the ingest benchmark's files);
  2. in the peer virtualenv of `bench/compare ingest` (chromadb 1.5.9), one process starts each
     server on a free loopback port — `quiver serve` (request logs at warn) and `chroma run` —
     loads the same vectors over HTTP in batches of 1,000, then, for 1, 4 and 16 concurrent
     clients, runs vector queries (top 10, no payloads) for `--seconds`, alone and while one more
     client upserts batches of 100 new vectors (encoded beforehand, at most 10,000 per cell) as
     fast as it is answered;
  3. text queries (embedded by the server: all-MiniLM-L6-v2) run against `quiver serve` only,
     on `--text-docs` SciFact documents: Chroma's server does not embed (its embedding runs
     in the client, and its default model is downloaded at run time, which this machine cannot);
  4. a table: QPS and p50/p99 latency per cell, the writer's docs/s, and Quiver / Chroma ratios.

Every client is the same code: one keep-alive `http.client` connection per client thread,
pre-encoded JSON bodies, latency from send to the whole answer read. Clients and servers share
the machine's cores, as they would on one box.
"""

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from _common import REPO, CompareError, entry, last_json, logger, quiver_bin
from compare_ingest import ensure_venv

log = logger("serve")
CONCURRENCY = (1, 4, 16)
BATCH_LOAD = 1000
BATCH_WRITE = 100
# Writer batches prepared per cell (100 x 100 = 10,000 new vectors at most).
WRITER_BATCHES = 100


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port, path, proc, what, timeout=120):
    t = time.time()
    while time.time() - t < timeout:
        if proc.poll() is not None:
            raise CompareError(f"{what} exited with {proc.returncode} before answering")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise CompareError(f"{what} did not answer {path} within {timeout}s")


class Http:
    """One keep-alive connection."""

    def __init__(self, port):
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method, path, body=None):
        headers = {"content-type": "application/json"} if body is not None else {}
        self.c.request(method, path, body=body, headers=headers)
        r = self.c.getresponse()
        data = r.read()
        if r.status != 200:
            raise CompareError(f"{method} {path}: {r.status} {data[:300]!r}")
        return json.loads(data) if data else None


# ---------------------------------------------------------------- the two servers


class Quiver:
    name = "quiver"

    def __init__(self, binary, workdir, dim):
        self.port = free_port()
        db = os.path.join(workdir, "quiver-db")
        env = dict(os.environ, QUIVER_LOG="warn")
        self.proc = subprocess.Popen([binary, "--db", db, "serve", "--addr", f"127.0.0.1:{self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=sys.stderr, env=env,
                                     start_new_session=True)
        wait_http(self.port, "/healthz", self.proc, "quiver serve")
        h = Http(self.port)
        schema = {"fields": {"emb": {"type": "dense", "dim": dim, "metric": "cosine"}}}
        h.call("PUT", "/collections/bench", json.dumps(schema))
        self.h = h

    def upsert_body(self, ids, vectors):
        pts = [{"id": i, "vectors": {"emb": v}} for i, v in zip(ids, vectors)]
        return json.dumps({"points": pts}).encode()

    def post_upsert(self, h, body):
        h.call("PUT", "/collections/bench/points", body)

    def query_body(self, v):
        return json.dumps({"query": v, "limit": 10, "with_payload": False}).encode()

    def query(self, h, body):
        r = h.call("POST", "/collections/bench/points/query", body)
        return [p["id"] for p in r["result"]["points"]]

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=60)


class Chroma:
    name = "chroma"

    def __init__(self, venv_bin, workdir, dim):
        import chromadb  # the peer venv's
        self.port = free_port()
        chroma = os.path.join(venv_bin, "chroma")
        self.proc = subprocess.Popen([chroma, "run", "--path", os.path.join(workdir, "chroma"),
                                      "--host", "127.0.0.1", "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_http(self.port, "/api/v2/heartbeat", self.proc, "chroma run")
        client = chromadb.HttpClient(host="127.0.0.1", port=self.port)
        col = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
        base = "/api/v2/tenants/default_tenant/databases/default_database/collections"
        self.path = f"{base}/{col.id}"
        self.version = chromadb.__version__

    def upsert_body(self, ids, vectors):
        body = {"ids": [str(i) for i in ids], "embeddings": vectors,
                "metadatas": None, "documents": None, "uris": None}
        return json.dumps(body).encode()

    def post_upsert(self, h, body):
        h.call("POST", f"{self.path}/upsert", body)

    def query_body(self, v):
        return json.dumps({"query_embeddings": [v], "n_results": 10,
                           "include": ["distances"]}).encode()

    def query(self, h, body):
        r = h.call("POST", f"{self.path}/query", body)
        return [int(i) for i in r["ids"][0]]

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


# ---------------------------------------------------------------- load


def percentile(sorted_ms, p):
    if not sorted_ms:
        return None
    return sorted_ms[min(len(sorted_ms) - 1, int(p * (len(sorted_ms) - 1) + 0.5))]


def measure(engine, bodies, clients, seconds, writer=None):
    """QPS and latency of `clients` threads sending `bodies` round-robin for `seconds`; with
    `writer` (a function of one connection), one more thread writes throughout."""
    stop = threading.Event()
    lat = [[] for _ in range(clients)]
    errors = []

    def client(k):
        h = Http(engine.port)
        i = k
        try:
            while not stop.is_set():
                t = time.perf_counter()
                engine.query(h, bodies[i % len(bodies)])
                lat[k].append((time.perf_counter() - t) * 1e3)
                i += clients
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    written = [0]

    def write():
        h = Http(engine.port)
        try:
            while not stop.is_set():
                written[0] += writer(h)
        except Exception as e:  # noqa: BLE001
            errors.append("writer: " + repr(e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    if writer:
        threads.append(threading.Thread(target=write))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    if errors:
        raise CompareError(f"{engine.name}: {errors[0]}")
    all_ms = sorted(x for l in lat for x in l)
    return {"qps": len(all_ms) / took, "p50_ms": percentile(all_ms, 0.5),
            "p99_ms": percentile(all_ms, 0.99), "queries": len(all_ms),
            "writer_docs_per_s": written[0] / took if writer else None}


def load_base(engine, base):
    t = time.perf_counter()
    h = Http(engine.port)
    for s in range(0, len(base), BATCH_LOAD):
        ids = list(range(s, min(s + BATCH_LOAD, len(base))))
        engine.post_upsert(h, engine.upsert_body(ids, base[s:s + BATCH_LOAD]))
    return time.perf_counter() - t


def recall(engine, queries, gt):
    h = Http(engine.port)
    hit = 0
    for q, truth in zip(queries, gt):
        hit += len(set(engine.query(h, engine.query_body(q))) & set(truth[:10]))
    return hit / (10 * len(queries))


def run_vector_cells(engine, base, queries, gt, seconds, dim, rng):
    log(f"{engine.name}: loading {len(base)} vectors")
    load_s = load_base(engine, base)
    time.sleep(3)  # let background seals settle a little (both engines index in the background)
    cells = {"load_seconds": load_s, "recall_at_10": recall(engine, queries, gt), "cells": []}
    bodies = [engine.query_body(q) for q in queries]
    next_id = [len(base) + 1_000_000]

    def writer_for_cell():
        # Bodies encoded before the cell starts, so the writer thread does not hold the
        # clients' GIL building them; the writer stops when they run out (reported).
        batches = []
        for _ in range(WRITER_BATCHES):
            ids = list(range(next_id[0], next_id[0] + BATCH_WRITE))
            next_id[0] += BATCH_WRITE
            vs = [[rng.gauss(0, 1) for _ in range(dim)] for _ in ids]
            batches.append(engine.upsert_body(ids, vs))
        it = iter(batches)

        def writer(h):
            body = next(it, None)
            if body is None:
                time.sleep(0.01)
                return 0
            engine.post_upsert(h, body)
            return BATCH_WRITE
        return writer

    for busy in (False, True):
        for c in CONCURRENCY:
            cells["cells"].append(cell(engine.name, "vector", engine, bodies, c, seconds,
                                       writer_for_cell() if busy else None))
    return cells


def cell(name, kind, engine, bodies, clients, seconds, writer=None):
    """One measured cell: `clients` query clients (plus `writer`), logged and labelled."""
    r = measure(engine, bodies, clients, seconds, writer)
    r.update(clients=clients, with_writer=writer is not None, kind=kind)
    log(f"{name}: {kind}, {clients} clients{' + writer' if writer is not None else ''}: "
        f"{r['qps']:.0f} QPS, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms")
    return r


def scifact(n):
    path = os.path.join(REPO, "..", "shared", "data", "scifact")
    docs, queries = [], []
    with open(os.path.join(path, "corpus.jsonl")) as f:
        for line in f:
            d = json.loads(line)
            docs.append({"id": len(docs), "payload": {"title": d.get("title", ""), "text": d["text"]}})
            if len(docs) == n:
                break
    with open(os.path.join(path, "queries.jsonl")) as f:
        for line in f:
            queries.append(json.loads(line)["text"])
            if len(queries) == 200:
                break
    return docs, queries


def run_text_cells(engine, n_docs, seconds):
    docs, queries = scifact(n_docs)
    h = Http(engine.port)
    schema = {"fields": {"emb": {"type": "dense", "dim": 384, "metric": "cosine",
                                 "model": "all-MiniLM-L6-v2", "embed": ["title", "text"]}}}
    h.call("PUT", "/collections/text", json.dumps(schema))
    log(f"quiver: embedding and loading {len(docs)} SciFact documents")
    t = time.perf_counter()
    for s in range(0, len(docs), 100):
        h.call("PUT", "/collections/text/points", json.dumps({"points": docs[s:s + 100]}))
    load_s = time.perf_counter() - t

    class Text:
        name, port = "quiver", engine.port

        def query(self, h, body):
            return h.call("POST", "/collections/text/points/query", body)

    bodies = [json.dumps({"query": q, "limit": 10, "with_payload": False}).encode() for q in queries]
    out = {"docs": len(docs), "load_seconds": load_s, "cells": []}
    for c in CONCURRENCY:
        out["cells"].append(cell("quiver", "text", Text(), bodies, c, seconds))
    return out


def peer_main(argv):
    """Runs in the peer venv: both servers, all cells; prints one JSON object."""
    a = json.loads(argv[0])
    import numpy as np
    base = np.load(a["base"]).astype(np.float32)
    queries = np.load(a["queries"]).astype(np.float32)
    gt = np.load(a["gt"])
    base_l = base.tolist()
    q_l = queries.tolist()
    gt_l = gt.tolist()
    dim = base.shape[1]
    rng = random.Random(a["seed"])
    out = {"count": len(base_l), "dim": dim, "seconds_per_cell": a["seconds"], "engines": {}}
    with tempfile.TemporaryDirectory(prefix="quiver-compare-serve-") as wd:
        for make in a["engines"]:
            if make == "quiver":
                e = Quiver(a["quiver"], wd, dim)
            else:
                e = Chroma(os.path.dirname(sys.executable), wd, dim)
                out["chroma_version"] = e.version
            try:
                out["engines"][e.name] = run_vector_cells(e, base_l, q_l, gt_l, a["seconds"], dim, rng)
                if e.name == "quiver" and a["text_docs"] > 0:
                    out["text"] = run_text_cells(e, a["text_docs"], a["seconds"])
            finally:
                e.stop()
    print(json.dumps(out))
    return 0


# ---------------------------------------------------------------- orchestration


def table(r):
    lines = [f"Serve comparison: {r['count']} x {r['dim']} vectors, top 10, "
             f"{r['seconds_per_cell']}s per cell; {os.cpu_count()} cpus"]
    lines.append(f"{'engine':<8}{'kind':<8}{'clients':>8}{'writer':>8}{'QPS':>9}{'p50 ms':>9}"
                 f"{'p99 ms':>9}{'write d/s':>11}")
    rows = []
    for name, e in r["engines"].items():
        rows += [(name, c) for c in e["cells"]]
    rows += [("quiver", c) for c in r.get("text", {}).get("cells", [])]
    for name, c in rows:
        w = c["writer_docs_per_s"]
        lines.append(f"{name:<8}{c['kind']:<8}{c['clients']:>8}{'yes' if c['with_writer'] else 'no':>8}"
                     f"{c['qps']:>9.0f}{c['p50_ms']:>9.2f}{c['p99_ms']:>9.2f}"
                     f"{(f'{w:.0f}' if w else '-'):>11}")
    for name, e in r["engines"].items():
        lines.append(f"{name}: load {e['load_seconds']:.1f}s, recall@10 {e['recall_at_10']:.4f}")
    if "quiver" in r["engines"] and "chroma" in r["engines"]:
        lines.append("Quiver / Chroma (QPS > 1: Quiver faster; p99 < 1: Quiver lower):")
        for q, c in zip(r["engines"]["quiver"]["cells"], r["engines"]["chroma"]["cells"]):
            lines.append(f"  {q['clients']:>2} clients{' + writer' if q['with_writer'] else '         '}"
                         f"  QPS {q['qps'] / c['qps']:.2f}x  p99 {q['p99_ms'] / c['p99_ms']:.2f}x")
    if "text" in r:
        lines.append(f"text: {r['text']['docs']} SciFact documents embedded and loaded in "
                     f"{r['text']['load_seconds']:.1f}s (all-MiniLM-L6-v2, in the server)")
    return "\n".join(lines)


def main(argv):
    ap = argparse.ArgumentParser(prog="bench/compare serve", description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20_000, help="vectors loaded (default 20000)")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per cell (default 8)")
    ap.add_argument("--text-docs", type=int, default=1000,
                    help="SciFact documents for the text cells (0: none; default 1000)")
    ap.add_argument("--peers", default="chroma", help="chroma, or empty for Quiver alone")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    binary = quiver_bin(log)
    out = subprocess.run([binary, "--json", "bench", "ingest", "--prepare-only", "--count",
                          str(a.count), "--queries", "100", "--seed", str(a.seed)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise CompareError(f"preparing data: {out.stderr}")
    data = last_json(out.stdout, "quiver bench ingest --prepare-only")
    py = ensure_venv()
    engines = ["quiver"] + [p for p in a.peers.split(",") if p]
    args = {"base": data["base"], "queries": data["queries"], "gt": data["gt"], "quiver": binary,
            "seconds": a.seconds, "text_docs": a.text_docs, "engines": engines, "seed": a.seed}
    log(f"running {py} compare_serve.py _peer (engines: {', '.join(engines)})")
    p = subprocess.run([py, os.path.join(os.path.dirname(__file__), "compare_serve.py"), "_peer",
                        json.dumps(args)], stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    if p.returncode != 0:
        raise CompareError(f"the load run failed (exit {p.returncode})")
    r = last_json(p.stdout, "compare_serve _peer")
    print(json.dumps(r) if a.json else table(r))
    return 0


if __name__ == "__main__":
    entry(main, peer_main)
