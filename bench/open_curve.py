#!/usr/bin/env python3
"""Open-cost curve: how the cost of OPENING a collection grows with its size (issue 12 item 3).

For each size N (default 10^4, 10^5, 10^6 documents) this builds, once, a database with one
collection `c` (32-d dense field with an HNSW or flat index, keyword/integer payload fields and a
BM25 text field), every row sealed by `collection flush`. It then runs each of these read-only
commands `--runs` times, each in a fresh process, so every run pays the full open:

    quiver --db DB --json count c
    quiver --db DB --json get c 7
    quiver --db DB --json search c --vector '[...32 floats...]'
    quiver --db DB --json collection info c

and reports wall time (min and median ms, `time.perf_counter` around the child), CPU time (median
user+sys ms) and peak RSS (median MiB), both from the child's `os.wait4` rusage, the collection
directory's on-disk size, a `quiver --version` row ("noop": process start-up, opening nothing) as
the floor, and the ratio of the largest size's figure to the smallest's. If opening is O(1) in the
data, those ratios stay near 1 while the disk size grows 100x. The page cache is never dropped:
every number, including the "first count" taken once per size before the repeated runs, is with a
warm page cache.

Documents come from a fixed-seed generator (`--seed`, printed); databases are cached in --work by
size and reused when their count, seed and index kind match, so reruns only measure.

Run (Python 3 standard library only):

    cargo build -p quiver-cli        # or pass any quiver binary with --quiver
    python3 bench/open_curve.py --quiver PATH/quiver --sizes 10000,100000,1000000 --runs 5 [--json]
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

DIM = 32
SCHEMA = """mutable_max_rows = 200000
[fields.emb]
type = "dense"
dim = {dim}
metric = "cosine"
index = {index}
[fields.tag]
type = "keyword"
[fields.year]
type = "integer"
[fields.text]
type = "keyword"
[fields.body]
type = "text"
source = ["text"]
"""
INDEX = {
    "hnsw": '{ type = "hnsw", m = 8, ef_construction = 40 }',
    "flat": '{ type = "flat" }',
}


def log(msg):
    print(f"[open_curve] {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(f"error: {msg}")
    sys.exit(1)


def run_measured(cmd):
    """Run cmd in a fresh process; return (wall seconds, max RSS bytes, stdout text, CPU seconds)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        if p.returncode != 0:
            raise RuntimeError(
                f"exit {p.returncode}: {' '.join(cmd)}\n{err.read().decode('utf-8', 'replace')}")
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss = ru.ru_maxrss if sys.platform == "darwin" else ru.ru_maxrss * 1024
    return wall, rss, stdout, ru.ru_utime + ru.ru_stime


def run_checked(cmd):
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        die(f"exit {r.returncode}: {' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def vec(rng):
    return [round(rng.gauss(0.0, 1.0), 5) for _ in range(DIM)]


def write_docs(path, n, seed):
    """Stream n JSONL documents to path (never holds them all in memory)."""
    rng = random.Random(seed)
    with open(path, "w", buffering=1 << 20) as f:
        for i in range(n):
            doc = {
                "id": i,
                "vectors": {"emb": vec(rng)},
                "payload": {
                    "tag": f"t{i % 10}",
                    "year": 1990 + i % 30,
                    "text": f"doc {i} word{i % 1000} other{i % 37}",
                },
            }
            f.write(json.dumps(doc, separators=(",", ":")))
            f.write("\n")


def count(quiver, db):
    return json.loads(run_checked([quiver, "--db", db, "--json", "count", "c"]))["count"]


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total


def ensure_db(quiver, work, n, seed, index, batch_size):
    """The database for size n, built if missing or stale; returns (db, meta)."""
    db = os.path.join(work, f"db-{index}-{n}")
    meta_path = os.path.join(work, f"db-{index}-{n}.meta.json")
    if os.path.exists(meta_path) and os.path.isdir(db):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("seed") == seed and meta.get("index") == index and meta.get("n") == n:
            try:
                if count(quiver, db) == n:
                    log(f"N={n}: reusing {db}")
                    return db, meta
            except SystemExit:
                pass
        log(f"N={n}: {db} is stale; rebuilding")
    if os.path.exists(db):
        subprocess.run(["rm", "-rf", db], check=True)
    if os.path.exists(meta_path):
        os.remove(meta_path)
    os.makedirs(work, exist_ok=True)
    schema = os.path.join(work, f"schema-{index}.toml")
    with open(schema, "w") as f:
        f.write(SCHEMA.format(dim=DIM, index=INDEX[index]))
    docs = os.path.join(work, f"docs-{n}.jsonl")
    log(f"N={n}: generating {docs} (seed {seed})")
    t0 = time.perf_counter()
    write_docs(docs, n, seed)
    gen_s = time.perf_counter() - t0
    run_checked([quiver, "--db", db, "collection", "create", "c", "--schema", schema])
    log(f"N={n}: ingesting (--batch-size {batch_size}, index {index})")
    t0 = time.perf_counter()
    run_checked([quiver, "--db", db, "ingest", "c", docs, "--batch-size", str(batch_size)])
    ingest_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_checked([quiver, "--db", db, "collection", "flush", "c"])
    flush_s = time.perf_counter() - t0
    os.remove(docs)
    got = count(quiver, db)
    if got != n:
        die(f"N={n}: count after ingest is {got}")
    meta = {"n": n, "seed": seed, "index": index, "generate_s": gen_s, "ingest_s": ingest_s,
            "flush_s": flush_s, "batch_size": batch_size}
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    log(f"N={n}: built in {ingest_s:.1f}s ingest + {flush_s:.1f}s flush")
    return db, meta


def fmt_ratio(a, b):
    return f"{a / b:.2f}x" if b else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quiver", default=os.path.expanduser("~/.cache/quiver/ci-target/debug/quiver"))
    ap.add_argument("--work", default="/tmp/quiver-open-curve")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--index", choices=sorted(INDEX), default="hnsw",
                    help="index kind of the dense field, the same for every size")
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--json", action="store_true", help="print a JSON summary")
    args = ap.parse_args()

    quiver = os.path.abspath(args.quiver)
    if not os.access(quiver, os.X_OK):
        die(f"{quiver} is not an executable")
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    if args.runs < 1 or not sizes:
        die("need --runs >= 1 and at least one size")

    qrng = random.Random(args.seed + 1)
    query = json.dumps(vec(qrng), separators=(",", ":"))
    commands = {
        "noop": ["--version"],  # process start-up only, opens nothing: the floor under the rest
        "count": ["--json", "count", "c"],
        "get": ["--json", "get", "c", "7"],
        "search": ["--json", "search", "c", "--vector", query],
        "info": ["--json", "collection", "info", "c"],
    }
    log(f"quiver {quiver}; seed {args.seed}; index {args.index}; runs {args.runs}")

    results = []
    for n in sizes:
        db, meta = ensure_db(quiver, args.work, n, args.seed, args.index, args.batch_size)
        disk = dir_bytes(os.path.join(db, "collections", "c"))
        info = json.loads(run_checked([quiver, "--db", db, "--json", "collection", "info", "c"]))
        first_wall, first_rss, _, first_cpu = run_measured([quiver, "--db", db] + commands["count"])
        row = {"n": n, "disk_bytes": disk, "build": meta, "segments": len(info["segments"]),
               "mutable_rows": info["mutable_rows"],
               "first_count": {"wall_ms": first_wall * 1e3, "rss_mib": first_rss / 2**20,
                               "cpu_ms": first_cpu * 1e3},
               "commands": {}}
        for name, tail in commands.items():
            walls, rsss, cpus = [], [], []
            for _ in range(args.runs):
                w, r, out, cpu = run_measured([quiver, "--db", db] + tail)
                walls.append(w * 1e3)
                cpus.append(cpu * 1e3)
                rsss.append(r / 2**20)
            if name == "count" and json.loads(out)["count"] != n:
                die(f"N={n}: count printed {out.strip()}")
            row["commands"][name] = {
                "wall_ms_min": min(walls), "wall_ms_median": statistics.median(walls),
                "rss_mib_median": statistics.median(rsss), "cpu_ms_median": statistics.median(cpus),
                "wall_ms": walls, "rss_mib": rsss, "cpu_ms": cpus}
        results.append(row)
        log(f"N={n}: measured")

    print(f"quiver: {quiver}")
    print(f"seed {args.seed}; dense index {args.index} (m=8, ef_construction=40)"
          if args.index == "hnsw" else f"seed {args.seed}; dense index flat")
    print(f"{args.runs} runs per command, each a fresh process; warm page cache (never dropped)")
    print()
    hdr = (f"{'size':>9} | {'command':<7} | {'wall min / median ms':>21} | {'CPU ms':>8} | "
           f"{'RSS MiB':>8} | {'disk MiB':>8}")
    print(hdr)
    print("-" * len(hdr))
    for row in results:
        disk = row["disk_bytes"] / 2**20
        for name, c in row["commands"].items():
            wall = f"{c['wall_ms_min']:.1f} / {c['wall_ms_median']:.1f}"
            print(f"{row['n']:>9} | {name:<7} | {wall:>21} | {c['cpu_ms_median']:>8.1f} | "
                  f"{c['rss_mib_median']:>8.1f} | {disk:>8.1f}")
        fc = row["first_count"]
        print(f"{row['n']:>9} | {'count¹':<7} | {fc['wall_ms']:>21.1f} | {fc['cpu_ms']:>8.1f} | "
              f"{fc['rss_mib']:>8.1f} | {disk:>8.1f}")
        b = row["build"]
        print(f"{'':>9}   {row['segments']} sealed segment(s), {row['mutable_rows']} mutable rows; "
              f"build: ingest {b['ingest_s']:.1f}s + flush {b['flush_s']:.1f}s "
              f"(generate {b['generate_s']:.1f}s)")
    print("CPU ms = median user+sys time of the child (less sensitive than wall to a busy machine)")
    print("noop = `quiver --version` (start-up, no open)")
    print("¹ the first count run for this size, before the repeated runs (warm page cache)")

    ratios = {}
    if len(results) >= 2:
        lo, hi = results[0], results[-1]
        print()
        print(f"ratio N={hi['n']} / N={lo['n']} ({hi['n'] / lo['n']:g}x the documents):")
        print(f"  {'command':<7} | {'wall min':>8} | {'wall med':>8} | {'CPU med':>8} | {'RSS':>8}")
        for name in commands:
            a, b = hi["commands"][name], lo["commands"][name]
            ratios[name] = {k: a[k] / b[k] if b[k] else None
                            for k in ("wall_ms_min", "wall_ms_median", "cpu_ms_median", "rss_mib_median")}
            print(f"  {name:<7} | {fmt_ratio(a['wall_ms_min'], b['wall_ms_min']):>8} | "
                  f"{fmt_ratio(a['wall_ms_median'], b['wall_ms_median']):>8} | "
                  f"{fmt_ratio(a['cpu_ms_median'], b['cpu_ms_median']):>8} | "
                  f"{fmt_ratio(a['rss_mib_median'], b['rss_mib_median']):>8}")
        ratios["disk"] = hi["disk_bytes"] / lo["disk_bytes"] if lo["disk_bytes"] else None
        print(f"  disk    | {fmt_ratio(hi['disk_bytes'], lo['disk_bytes']):>8}")

    if args.json:
        print(json.dumps({"quiver": quiver, "seed": args.seed, "index": args.index,
                          "runs": args.runs, "page_cache": "warm", "sizes": results,
                          "ratio_largest_to_smallest": ratios}, indent=2))


if __name__ == "__main__":
    main()
