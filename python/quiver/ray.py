"""Sharded collections on Ray: `pip install 'quiver[ray]'`.

    import ray, quiver.ray
    ray.init()
    sc = quiver.ray.create_sharded("papers", schema, shards=4, root="/shared/quiver", replicas=2)
    sc.add(ids, payloads, vectors={"emb": X})          # routed by a stable hash of each id
    hits = sc.search("who likes quokkas?", mode="hybrid", k=10)
    sc = quiver.ray.open_sharded("/shared/quiver")     # from another driver, later

A shard is a Ray actor that owns one Quiver database directory under `root` and opens it in its
own process (only the path and the schema are sent to it). `root` must be visible from every node
that may run a shard (a shared filesystem; on one machine, any directory). The shard map
(`root/quiver-shards.json`: shards, replicas, directories) is written once, atomically, so a new
driver reattaches with `open_sharded(root)`.

Queries are compiled and embedded once, by one shard (`Collection.prepare`), then sent to every
shard as a plan with vectors. A BM25 source first gathers every shard's statistics (N, total
length, df per query term) and sends their sum with the plan, so each shard scores as one
collection holding all documents would. A plan with one source merges the shards' top lists by
score; with several, each shard returns each source's list, the driver merges them per source and
fuses them with the engine's fusion code (`quiver._quiver.fuse`), so exact-mode results equal one
collection's. A plan with rescore stages runs whole on each shard (each rescoring its own
candidates, which include the ones a single collection would rescore) and the driver merges the
rescored lists by score.

Writes go to every replica of a shard and return when all are durable. A shard actor that dies is
restarted by Ray (`max_restarts=-1`) and reopens its directory; calls made meanwhile wait for it.
A query reads one replica and moves to the next when it fails or passes `timeout_s`; a shard with
no replica answering is named in the result's `missing_shards` (the result says it is partial),
never dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Sequence

import numpy as np

try:
    import ray
    from ray.exceptions import RayActorError, RayTaskError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("quiver.ray needs Ray: pip install 'quiver[ray]'") from e

from . import (Hits, InvalidInput, NotFound, QuiverError, _arrays, _ids, _quiver, _search_request,
               _with_documents)

__all__ = ["create_sharded", "open_sharded", "write", "ShardedCollection", "ShardedHits", "shard_of"]

SHARD_MAP = "quiver-shards.json"
MAP_VERSION = 1


def shard_of(doc_id: int | str, shards: int) -> int:
    """The shard of a document id: a stable hash (BLAKE2b of the typed id), the same in every
    process and Python version (unlike `hash`)."""
    if isinstance(doc_id, (bool, float)) or not isinstance(doc_id, (int, str, np.integer)):
        raise InvalidInput(f"id {doc_id!r}: an id must be an int or a str")
    key = b"i:%d" % int(doc_id) if not isinstance(doc_id, str) else b"s:" + doc_id.encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") % shards


# ---------------------------------------------------------------- the shard actor


class _Shard:
    """One replica of one shard: a Quiver database directory opened in this actor's process."""

    def __init__(self, path: str, name: str, schema: Mapping[str, Any]):
        import quiver

        self.path = path
        self.db = quiver.connect(path)
        if name in self.db.list_collections():
            self.col = self.db.collection(name)
        else:
            self.col = self.db.create_collection(name, schema)

    def ping(self) -> dict:
        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "path": self.path}

    def add(self, ids, payloads, vectors) -> dict:
        return self.col.add(ids, payloads, vectors)

    def upsert(self, docs) -> dict:
        return self.col.upsert(docs)

    def delete(self, ids=None, filter=None) -> dict:
        return self.col.delete(ids=ids, filter=filter)

    @ray.method(max_task_retries=0)
    def count(self, filter=None) -> int:
        return self.col.count(filter)

    @ray.method(max_task_retries=0)
    def get(self, ids, with_vectors=False) -> list:
        return self.col.get(ids, with_vectors)

    def flush(self) -> None:
        self.col.flush()

    @ray.method(max_task_retries=0)
    def prepare(self, query) -> tuple:
        return self.col._c.prepare(query)

    @ray.method(max_task_retries=0)
    def bm25_stats(self, texts: list) -> list:
        """Statistics per (text, field) pair."""
        return [self.col._c.bm25_stats(t, f) for t, f in texts]

    @ray.method(max_task_retries=0)
    def run(self, plans: list) -> list:
        """Each plan's hits as `(ids, scores, payloads or None)`."""
        out = []
        for plan in plans:
            h = self.col.query(plan)
            out.append((h.ids, h.scores.tolist(), h.payloads if plan.get("with_payload", True) else None))
        return out


# Threaded (searches from many driver threads run at once: the native calls release the GIL);
# restarted forever by Ray. A write made while it restarts waits and is retried (upserts and
# deletes by id are idempotent); a read fails at once (`max_task_retries=0` above), so the driver
# reads another replica instead of waiting for this one.
ShardActor = ray.remote(max_restarts=-1, max_task_retries=-1, max_concurrency=16)(_Shard)


# ---------------------------------------------------------------- the shard map


def _map_path(root: str) -> str:
    return os.path.join(root, SHARD_MAP)


def _write_map(root: str, m: dict) -> None:
    os.makedirs(root, exist_ok=True)
    tmp = _map_path(root) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(m, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, _map_path(root))
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_map(root: str) -> dict:
    p = _map_path(root)
    try:
        with open(p) as f:
            m = json.load(f)
    except FileNotFoundError:
        raise NotFound(f"{p}: no shard map (create the collection with quiver.ray.create_sharded)") from None
    except ValueError as e:
        raise QuiverError(f"{p}: not a shard map: {e}") from None
    if m.get("version") != MAP_VERSION:
        raise QuiverError(f"{p}: shard map version {m.get('version')!r}, this package reads {MAP_VERSION}")
    return m


def create_sharded(
    name: str,
    schema: Mapping[str, Any],
    shards: int,
    root: str,
    replicas: int = 1,
    timeout_s: float = 30.0,
    num_cpus: float | None = None,
    hedge_s: float = 0.1,
) -> "ShardedCollection":
    """Creates a sharded collection under directory `root` (one database directory per shard
    and replica) and starts its shard actors, spread over the cluster's nodes (the replicas of a
    shard on different nodes when there are enough). `AlreadyExists` if `root` holds one.
    `timeout_s` bounds each read of a shard; after `hedge_s` without an answer a read also asks
    the shard's next replica; `num_cpus` is the actors' Ray CPU request (Ray's default when
    `None`)."""
    from . import AlreadyExists

    if not isinstance(shards, int) or shards < 1:
        raise InvalidInput(f"shards: expected an int >= 1, got {shards!r}")
    if not isinstance(replicas, int) or replicas < 1:
        raise InvalidInput(f"replicas: expected an int >= 1, got {replicas!r}")
    root = os.path.abspath(os.fspath(root))
    if os.path.exists(_map_path(root)):
        raise AlreadyExists(f"{_map_path(root)}: a sharded collection is already there (open_sharded)")
    if isinstance(schema, str):
        schema = json.loads(schema)
    # Refuse a bad schema here, before any actor or directory exists.
    import quiver

    import tempfile

    with tempfile.TemporaryDirectory() as probe:
        quiver.connect(probe).create_collection(name, schema)
    m = {
        "version": MAP_VERSION,
        "name": name,
        "schema": schema,
        "shards": shards,
        "replicas": replicas,
        "dirs": [[f"shard-{s:04d}/replica-{r}" for r in range(replicas)] for s in range(shards)],
    }
    sc = ShardedCollection(root, m, timeout_s=timeout_s, num_cpus=num_cpus, hedge_s=hedge_s)
    sc._start()
    _write_map(root, m)
    return sc


def open_sharded(root: str, timeout_s: float = 30.0, num_cpus: float | None = None,
                 hedge_s: float = 0.1) -> "ShardedCollection":
    """Reattaches to the sharded collection under `root` (its shard actors if they still run,
    new ones over the same directories otherwise)."""
    root = os.path.abspath(os.fspath(root))
    sc = ShardedCollection(root, _read_map(root), timeout_s=timeout_s, num_cpus=num_cpus, hedge_s=hedge_s)
    sc._start()
    return sc


# ---------------------------------------------------------------- distributed ingest (Ray Data)


def _column(batch, name, n):
    """A numpy batch column as Python values (numpy scalars become ints, floats, strs)."""
    col = batch[name]
    return col.tolist() if hasattr(col, "tolist") else list(col)[:n]


class _Embed:
    """A Ray Data `map_batches` callable: computes the vectors of the schema's model-backed dense
    fields from each row's payload, with the engine's own embedding (`_quiver.embed_payloads`);
    the model loads once per worker (the engine's model pool)."""

    def __init__(self, schema: dict, id_column: str):
        self.schema, self.id_column = json.dumps(schema), id_column
        fields = schema.get("fields", {})
        self.dense = {f for f, spec in fields.items() if spec.get("type") == "dense"}

    def __call__(self, batch: dict) -> dict:
        n = len(batch[self.id_column])
        cols = [c for c in batch if c != self.id_column and c not in self.dense]
        payloads = [dict(zip(cols, row)) for row in zip(*(_column(batch, c, n) for c in cols))] if cols else [{}] * n
        out = dict(batch)
        for field, arr in _quiver.embed_payloads(self.schema, payloads).items():
            if field not in batch:
                out[field] = arr
        return out


class _Write:
    """A Ray Data `map_batches` callable: routes each batch to the shards (every replica, durable
    when it returns) and reports the rows written per shard."""

    def __init__(self, root: str, id_column: str, timeout_s: float):
        self.sc, self.id_column = open_sharded(root, timeout_s=timeout_s), id_column
        self.dense = {f for f, spec in self.sc.schema.get("fields", {}).items() if spec.get("type") == "dense"}

    def __call__(self, batch: dict) -> dict:
        n = len(batch[self.id_column])
        ids = _column(batch, self.id_column, n)
        cols = [c for c in batch if c != self.id_column and c not in self.dense]
        payloads = [dict(zip(cols, row)) for row in zip(*(_column(batch, c, n) for c in cols))] if cols else None
        vectors = {f: np.asarray(batch[f], dtype=np.float32) for f in self.dense if f in batch}
        self.sc.add(ids, payloads, vectors or None)
        per_shard = [0] * self.sc.shards
        for i in ids:
            per_shard[shard_of(i, self.sc.shards)] += 1
        return {"rows": np.asarray([n]), "per_shard": np.asarray([per_shard])}


def write(ds, sc: "ShardedCollection", *, id_column: str = "id", batch_size: int = 1024,
          embed_concurrency: int = 1, write_concurrency: int = 1, progress: bool = True) -> dict:
    """Writes Ray Dataset `ds` (one row per document: `id_column`, payload columns, and optional
    vector columns named after dense fields) into `sc`. Model-backed dense fields are embedded in
    `embed_concurrency` Ray Data workers (`map_batches`, one model load each), then
    `write_concurrency` workers route each batch to the shards; a batch is acknowledged when
    every replica holds it durably. Upserts by id: a rerun after a failure writes each document
    once. Returns `{"rows", "seconds", "rows_per_s", "per_shard"}`; with `progress`, prints rows
    and rows/s as batches are acknowledged.

    `batch_size`: rows per embedding call and per write. Measured on SciFact's 5,183 documents
    (potion-base-8M, 2 shards, 2 CPUs, a dev-profile build): 460 rows/s at 64, 705 at 256, 768
    at 1,024 and 700 at 4,096; larger batches also hold more rows in flight per worker."""
    import sys

    t = time.perf_counter()
    embedded = ds.map_batches(_Embed, fn_constructor_args=(sc.schema, id_column), batch_size=batch_size,
                              batch_format="numpy", concurrency=embed_concurrency)
    written = embedded.map_batches(_Write, fn_constructor_args=(sc.root, id_column, sc.timeout_s),
                                   batch_size=batch_size, batch_format="numpy",
                                   concurrency=write_concurrency, num_cpus=0.5)
    rows, per_shard, last = 0, [0] * sc.shards, 0.0
    for b in written.iter_batches(batch_format="numpy", batch_size=None):
        rows += int(np.sum(b["rows"]))
        for row in b["per_shard"]:
            per_shard = [a + int(x) for a, x in zip(per_shard, row)]
        now = time.perf_counter()
        if progress and now - last >= 1.0:
            last = now
            print(f"quiver.ray.write: {rows} rows, {rows / (now - t):.0f} rows/s, per shard {per_shard}",
                  file=sys.stderr, flush=True)
    secs = time.perf_counter() - t
    report = {"rows": rows, "seconds": round(secs, 3), "rows_per_s": round(rows / secs, 1) if secs else 0.0,
              "per_shard": per_shard}
    if progress:
        print(f"quiver.ray.write: done, {report}", file=sys.stderr, flush=True)
    return report


# ---------------------------------------------------------------- results


class _Merged:
    """The native `Hits` interface over plain lists (what `Hits` wraps)."""

    def __init__(self, ids, scores, payloads, mode, took_ms, explain):
        self.ids, self.payloads, self.mode, self.took_ms, self.explain = ids, payloads, mode, took_ms, explain
        self.scores = np.asarray(scores, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"id": self.ids[i], "score": float(self.scores[i]), "payload": self.payloads[i]}

    def to_list(self) -> list:
        return [self[i] for i in range(len(self.ids))]

    def __repr__(self) -> str:
        return f"Hits({len(self.ids)} hits, mode={self.mode!r}, sharded)"


class ShardedHits(Hits):
    """`Hits` of a sharded collection, plus `missing_shards`: the shards no replica of which
    answered (an empty list unless the result is partial)."""

    __slots__ = ("missing_shards",)

    def __init__(self, merged: _Merged, missing_shards: list):
        super().__init__(merged)
        self.missing_shards = missing_shards

    @property
    def partial(self) -> bool:
        return bool(self.missing_shards)


def _merge(lists: list, limit: int) -> list:
    """Per-shard `(ids, scores, payloads)` lists into one, best first, ties by id (the engine's
    rule), cut at `limit`."""
    rows = []
    for ids, scores, payloads in lists:
        pl = payloads if payloads is not None else [None] * len(ids)
        rows.extend(zip(ids, scores, pl))
    rows.sort(key=lambda r: (-r[1], _id_key(r[0])))
    return rows[:limit]


def _id_key(i):
    # The engine orders integer ids before string ids.
    return (0, i, "") if isinstance(i, int) else (1, 0, i)


# ---------------------------------------------------------------- the sharded collection


class ShardedCollection:
    """A collection split over `shards` Ray actors (times `replicas`), with the calls of a local
    `quiver.Collection`."""

    def __init__(self, root: str, m: dict, timeout_s: float, num_cpus: float | None, hedge_s: float):
        self.root, self._map = root, m
        self.timeout_s, self.hedge_s = float(timeout_s), float(hedge_s)
        self._num_cpus = num_cpus
        self._actors: list[list] = []
        self._pool = ThreadPoolExecutor(max_workers=max(4, 2 * m["shards"] * m["replicas"]))
        self._lock = threading.Lock()

    # -- layout -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._map["name"]

    @property
    def shards(self) -> int:
        return self._map["shards"]

    @property
    def replicas(self) -> int:
        return self._map["replicas"]

    @property
    def schema(self) -> dict:
        return self._map["schema"]

    def _actor_name(self, s: int, r: int) -> str:
        tag = hashlib.blake2b(self.root.encode(), digest_size=6).hexdigest()
        return f"quiver-{tag}-{self.name}-s{s}-r{r}"

    def _start(self) -> None:
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
        self._actors = []
        for s in range(self.shards):
            row = []
            for r in range(self.replicas):
                path = os.path.join(self.root, self._map["dirs"][s][r])
                os.makedirs(path, exist_ok=True)
                opts = {"name": self._actor_name(s, r), "namespace": "quiver", "get_if_exists": True}
                if self._num_cpus is not None:
                    # Ray's default (None): 1 CPU to schedule, 0 while running. (With 0 to
                    # schedule, Ray does not keep the soft node affinity below.)
                    opts["num_cpus"] = self._num_cpus
                if nodes:
                    # Replicas of one shard on different nodes; shards round-robin. Soft: a shard
                    # whose node is gone restarts elsewhere (the directory is shared).
                    node = nodes[(s + r) % len(nodes)]
                    opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
                row.append(ShardActor.options(**opts).remote(path, self.name, self.schema))
            self._actors.append(row)
        # Every replica opened its directory (an error here names the directory).
        self._wait([a.ping.remote() for row in self._actors for a in row], "start")

    def placement(self, timeout_s: float = 120.0) -> list[list[dict]]:
        """Per shard and replica: the actor's pid, node id and directory (waiting up to
        `timeout_s` for replicas that are restarting)."""
        refs = [[a.ping.remote() for a in row] for row in self._actors]
        return [ray.get(row, timeout=timeout_s) for row in refs]

    # -- calls --------------------------------------------------------------------------

    def _wait(self, refs: list, what: str) -> list:
        try:
            return ray.get(refs)
        except RayTaskError as e:
            raise _unwrap(e, what) from None
        except RayActorError as e:
            raise QuiverError(f"{what}: a shard actor failed: {e}") from None

    def _write(self, per_shard: dict, method: str) -> list:
        """Calls `method(*args)` on every replica of each shard in `per_shard` (shard -> args);
        returns when every replica has answered (each write is durable when answered)."""
        refs = [getattr(a, method).remote(*args) for s, args in per_shard.items() for a in self._actors[s]]
        return self._wait(refs, method)

    def _read(self, s: int, method: str, *args):
        """`method(*args)` on one replica of shard `s`, within `timeout_s`, hedged: the call goes
        to one replica (a rotating start spreads reads); if it has not answered after `hedge_s`,
        to the next as well, and the first answer wins. A replica that is down fails at once and
        the next is called. A lone replica is called again (it may come back from a restart)
        until the time is up; then `_Unavailable`."""
        n = self.replicas
        deadline = time.monotonic() + self.timeout_s
        start = int(time.monotonic_ns() // 1000) % n
        pending: list = []
        sent, last = 0, None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not pending:
                if sent >= n:
                    time.sleep(min(0.05, left))  # every replica failed: give a restart a moment
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                pending.append(getattr(self._actors[s][(start + sent) % n], method).remote(*args))
                sent += 1
            ready, _ = ray.wait(pending, num_returns=1, timeout=min(left, self.hedge_s))
            if not ready:
                if len(pending) < n:  # hedge: also ask a replica not asked yet in this round
                    pending.append(getattr(self._actors[s][(start + sent) % n], method).remote(*args))
                    sent += 1
                continue
            pending.remove(ready[0])
            try:
                return ray.get(ready[0])
            except RayTaskError as e:
                raise _unwrap(e, method) from None
            except RayActorError as e:
                last = e
        raise _Unavailable(s, last or f"no answer within {self.timeout_s}s")

    def _read_all(self, method: str, args_per_shard: list, skip=()) -> tuple[list, list]:
        """`method` on every shard but those in `skip`, at once: (answers, with None for a
        missing shard; the missing shards, `skip` included)."""
        futs = [None if s in skip else self._pool.submit(self._read, s, method, *args_per_shard[s])
                for s in range(self.shards)]
        out, missing = [], []
        for s, f in enumerate(futs):
            try:
                if f is None:
                    raise _Unavailable(s, "skipped")
                out.append(f.result())
            except _Unavailable:
                out.append(None)
                missing.append(s)
        return out, missing

    # -- writes -------------------------------------------------------------------------

    def _route(self, ids: list) -> dict:
        by: dict[int, list[int]] = {}
        for i, doc_id in enumerate(ids):
            by.setdefault(shard_of(doc_id, self.shards), []).append(i)
        return by

    def add(self, ids: Sequence[int | str], payloads=None, vectors=None, documents=None, text_key: str = "text") -> dict:
        """`Collection.add`, routed: each shard gets its documents (rows of `vectors` go with
        their ids); returns when every replica of every shard written has them durably."""
        ids = _ids(ids)
        payloads = _with_documents(ids, payloads, documents, text_key)
        arrays = _arrays(vectors, len(ids)) or {}
        for f, a in arrays.items():
            if a.shape[0] != len(ids):
                raise InvalidInput(f"vectors[{f!r}]: {a.shape[0]} rows for {len(ids)} ids")
        per = {}
        for s, rows in self._route(ids).items():
            idx = np.asarray(rows)
            per[s] = ([ids[i] for i in rows], None if payloads is None else [payloads[i] for i in rows],
                      {f: np.ascontiguousarray(a[idx]) for f, a in arrays.items()} or None)
        return _sum_reports(self._write(per, "add"), self.replicas)

    def upsert(self, docs: Sequence[Mapping[str, Any]]) -> dict:
        """`Collection.upsert`, routed by each document's `id` (required here)."""
        from . import _plain_doc

        docs = [_plain_doc(d) for d in docs]
        for i, d in enumerate(docs):
            if not isinstance(d, Mapping) or "id" not in d:
                raise InvalidInput(f"document {i}: a sharded collection needs an `id` to route it")
        per = {s: ([docs[i] for i in rows],) for s, rows in self._route([d["id"] for d in docs]).items()}
        return _sum_reports(self._write(per, "upsert"), self.replicas)

    def delete(self, ids: Sequence[int | str] | None = None, filter: Mapping[str, Any] | None = None) -> dict:
        """Deletes by ids (routed) or by filter (on every shard)."""
        if (ids is None) == (filter is None):
            raise InvalidInput("delete: give ids or a filter (one of the two)")
        if ids is not None:
            ids = _ids(ids)
            per = {s: ([ids[i] for i in rows], None) for s, rows in self._route(ids).items()}
        else:
            per = {s: (None, filter) for s in range(self.shards)}
        return _sum_reports(self._write(per, "delete"), self.replicas)

    def flush(self) -> None:
        """Seals every replica's mutable segment."""
        self._write({s: () for s in range(self.shards)}, "flush")

    # -- reads --------------------------------------------------------------------------

    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """Documents in the collection (matching `filter`); `QuiverError` if a shard is down."""
        out, missing = self._read_all("count", [(filter,)] * self.shards)
        if missing:
            raise QuiverError(f"count: shards {missing} did not answer within {self.timeout_s}s")
        return sum(out)

    def __len__(self) -> int:
        return self.count()

    def get(self, ids, with_vectors: bool = False):
        """Stored documents by id, in order (`None` where not stored)."""
        one = isinstance(ids, (int, str, np.integer))
        ids = _ids([ids] if one else ids)
        out: list = [None] * len(ids)
        for s, rows in self._route(ids).items():
            docs = self._read(s, "get", [ids[i] for i in rows], with_vectors)
            for i, d in zip(rows, docs):
                out[i] = d
        return out[0] if one else out

    def search(self, query: str | Any, *, k: int = 10, mode: str | None = None, field: str | None = None,
               filter: Mapping[str, Any] | None = None, offset: int = 0, exact: bool = False,
               with_payload: bool = True, vector: Any = None, **options: Any):
        """`Collection.search` over every shard (a 2-D array: one query per row, run from
        driver threads at once; a list of `ShardedHits`)."""
        q, arr = _search_request(query, k, mode, field, filter, offset, exact, with_payload, vector, options)
        if arr is None:
            return self._query(q)
        if arr.ndim == 1:
            return self._query({**q, "vector": arr.tolist()})
        # Rows run from their own threads (each fans out to the shards on the shared pool).
        with ThreadPoolExecutor(max_workers=min(8, max(1, len(arr)))) as rows:
            return list(rows.map(lambda row: self._query({**q, "vector": row.tolist()}), arr))

    def query(self, plan: Mapping[str, Any]) -> ShardedHits:
        """`Collection.query` over every shard: a plan, or a whole request with a `mode`."""
        plan = dict(plan)
        return self._query(plan if "mode" in plan else {"mode": "plan", "plan": plan})

    def _query(self, request: dict) -> ShardedHits:
        t = time.perf_counter()
        mode, plan = self._prepare(request)
        missing: set[int] = set()
        self._add_bm25_stats(plan, missing)
        limit, offset = plan.get("limit", 10), plan.get("offset", 0)
        with_payload = plan.get("with_payload", True)
        prefetch = plan["prefetch"]
        if len(prefetch) == 1 or plan.get("rescore"):
            # Each shard runs the plan to offset + limit; the merge by score is the answer.
            cut = offset + limit if plan.get("rescore") else min(offset + limit, prefetch[0].get("limit", 100))
            sub = {**plan, "limit": offset + limit, "offset": 0}
            answers, gone = self._read_all("run", [([sub],)] * self.shards, skip=missing)
            missing.update(gone)
            rows = _merge([a[0] for a in answers if a is not None], cut)[offset:]
            stages = "per shard, merged by score"
        else:
            # One list per source from every shard, merged per source, fused here.
            subs = [{"prefetch": [p], "limit": p.get("limit", 100), "with_payload": False,
                     **({"filter": plan["filter"]} if "filter" in plan else {})} for p in prefetch]
            answers, gone = self._read_all("run", [(subs,)] * self.shards, skip=missing)
            missing.update(gone)
            lists = []
            for i, p in enumerate(prefetch):
                merged = _merge([a[i] for a in answers if a is not None], p.get("limit", 100))
                lists.append(([r[0] for r in merged], [r[1] for r in merged]))
            ids, scores = _quiver.fuse(lists, plan.get("fusion"))
            rows = [(i, s, None) for i, s in zip(ids, scores)][offset:offset + limit]
            if with_payload:
                docs = self.get([r[0] for r in rows])
                rows = [(i, s, (d or {}).get("payload")) for (i, s, _), d in zip(rows, docs)]
            stages = "sources per shard, merged per source, fused"
        rows = rows[:limit]
        merged = _Merged([r[0] for r in rows], [r[1] for r in rows],
                         [r[2] if with_payload else None for r in rows], mode,
                         (time.perf_counter() - t) * 1e3,
                         [{"stage": stages, "shards": self.shards, "missing_shards": sorted(missing)}])
        return ShardedHits(merged, sorted(missing))

    def _prepare(self, request: dict) -> tuple:
        """The plan with its query vectors, from the first shard that answers (embedded once)."""
        last = None
        for s in range(self.shards):
            try:
                return self._read(s, "prepare", request)
            except _Unavailable as e:
                last = e
        raise QuiverError(f"no shard answered to prepare the query: {last}")

    def _add_bm25_stats(self, plan: dict, missing: set) -> None:
        """Sums every shard's BM25 statistics into each bm25 source's `stats`."""
        texts = [(p["bm25"]["text"], p["bm25"].get("field")) for p in plan["prefetch"] if p.get("bm25")]
        if not texts:
            return
        answers, gone = self._read_all("bm25_stats", [(texts,)] * self.shards)
        # A shard whose statistics are missing is left out of the query too (its scores would
        # need the sum it is not part of): the answer is then marked partial.
        missing.update(gone)
        sums = [{"docs": 0, "total_len": 0, "df": {}} for _ in texts]
        for a in answers:
            if a is None:
                continue
            for acc, st in zip(sums, a):
                acc["docs"] += st["docs"]
                acc["total_len"] += st["total_len"]
                for term, _, df in st["terms"]:
                    acc["df"][term] = acc["df"].get(term, 0) + df
        it = iter(sums)
        for p in plan["prefetch"]:
            if p.get("bm25"):
                p["bm25"]["stats"] = next(it)

    def __repr__(self) -> str:
        return f"ShardedCollection({self.name!r}, shards={self.shards}, replicas={self.replicas}, root={self.root!r})"


class _Unavailable(Exception):
    def __init__(self, shard: int, cause):
        super().__init__(f"shard {shard}: no replica answered ({cause})")
        self.shard = shard


def _unwrap(e: RayTaskError, what: str) -> Exception:
    """The Quiver exception a shard raised, as the caller would get it from a local collection."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, QuiverError):
        return cause
    return QuiverError(f"{what}: {e}")


def _sum_reports(reports: list, replicas: int) -> dict:
    """Write reports of every replica summed per key, divided by the replica count (each
    document is counted once)."""
    out: dict = {}
    for r in reports:
        for key, v in (r or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[key] = out.get(key, 0) + v
    return {key: v // replicas if isinstance(v, int) else v / replicas for key, v in out.items()}
