"""LangChain integration: `QuiverVectorStore` (a langchain-core `VectorStore`) and
`QuiverEmbeddings` (langchain-core `Embeddings` computed in-process by Quiver's models).

    pip install 'quiver[langchain]'

    from quiver.langchain import QuiverVectorStore, QuiverEmbeddings
    store = QuiverVectorStore(path="./quiver-data", collection="docs", embedding=QuiverEmbeddings())
    store.add_texts(["Quokkas live on Rottnest Island."], metadatas=[{"source": "wiki"}])
    store.similarity_search("who likes quokkas?", k=4, filter={"source": "wiki"})

Each LangChain document is stored as one Quiver document: its id (a string; a uuid4 when none is
given), a payload holding the metadata's keys plus the text under `text_key` (default
`page_content`), and its vector in the dense field `vector`. The text is also indexed for BM25 in
the text field `text`, so `search_type="hybrid"`-style plans can run through `store.collection`.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Iterable, Sequence

import numpy as np

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
    from langchain_core.vectorstores.utils import maximal_marginal_relevance
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("quiver.langchain needs langchain-core: pip install 'quiver[langchain]'") from e

import quiver

_FILTER_KEYS = {"field", "and", "or", "not"}


def _filter(f: Any) -> Any:
    """A Quiver filter from Quiver's shape (`{"field": ..., "eq": ...}`, `and`/`or`/`not`), or
    from LangChain's common shorthand `{"key": value, ...}` (every key equal to its value; a list
    value means one of)."""
    if f is None:
        return None
    if not isinstance(f, dict):
        raise quiver.InvalidInput(f"filter: expected a dict, got {type(f).__name__}")
    if set(f) & _FILTER_KEYS:
        return f
    conds = [
        {"field": k, "in": list(v)} if isinstance(v, (list, tuple)) else {"field": k, "eq": v}
        for k, v in f.items()
    ]
    return conds[0] if len(conds) == 1 else {"and": conds}


class QuiverEmbeddings(Embeddings):
    """Sentence embeddings computed in this process by Quiver's engine (candle), from a registry
    model pulled and sha256-verified on first use."""

    def __init__(self, model: str = "all-MiniLM-L6-v2", dims: int | None = None):
        self.model = model
        self.dims = dims

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return quiver.embed(texts, model=self.model, dims=self.dims).tolist()

    def embed_query(self, text: str) -> list[float]:
        return quiver.embed([text], model=self.model, dims=self.dims)[0].tolist()


class QuiverVectorStore(VectorStore):
    """A LangChain vector store kept in a Quiver collection.

    Give `path` (a database directory, opened here) or `database` (an open `quiver.Database`),
    the `collection` name (created on first use, with a dense field of the embedding's width),
    and `embedding` (any LangChain `Embeddings`; `QuiverEmbeddings` computes them in-process).
    `metric` is `cosine` (default), `dot` or `l2`; scores are similarities (higher is closer).
    """

    def __init__(
        self,
        embedding: Embeddings,
        collection: str = "langchain",
        path: str | None = None,
        database: quiver.Database | None = None,
        metric: str = "cosine",
        text_key: str = "page_content",
        exact: bool = False,
    ):
        if (path is None) == (database is None):
            raise quiver.InvalidInput("QuiverVectorStore: give either path or database")
        self._embedding = embedding
        self.db = database if database is not None else quiver.connect(path)
        self.text_key = text_key
        self.metric = metric
        self.exact = exact
        if collection in self.db.list_collections():
            self.collection = self.db.collection(collection)
        else:
            dim = len(embedding.embed_query("dimension probe"))
            schema = {
                "fields": {
                    "vector": {"type": "dense", "dim": dim, "metric": metric},
                    "text": {"type": "text", "source": [text_key]},
                }
            }
            self.collection = self.db.create_collection(collection, schema)

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    # -- writes ---------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        texts = list(texts)
        if not texts:
            return []
        n = len(texts)
        metadatas = list(metadatas) if metadatas is not None else [{}] * n
        ids = list(ids) if ids is not None else [None] * n
        if len(metadatas) != n or len(ids) != n:
            raise quiver.InvalidInput(f"add_texts: {n} texts, {len(metadatas)} metadatas, {len(ids)} ids")
        ids = [str(i) if i is not None else str(uuid.uuid4()) for i in ids]
        payloads = []
        for m, t in zip(metadatas, texts):
            m = dict(m or {})
            if self.text_key in m:
                raise quiver.InvalidInput(f"metadata key {self.text_key!r} is where the text is stored; choose another text_key")
            m[self.text_key] = t
            payloads.append(m)
        vectors = np.asarray(self._embedding.embed_documents(texts), dtype=np.float32)
        self.collection.add(ids, payloads, {"vector": vectors})
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        if ids is None:
            flt = kwargs.get("filter")
            if flt is None:
                return False
            self.collection.delete(filter=_filter(flt))
            return True
        self.collection.delete(ids=[str(i) for i in ids])
        return True

    # -- reads ----------------------------------------------------------------------------

    def _document(self, id_: Any, payload: dict) -> Document:
        meta = dict(payload)
        text = meta.pop(self.text_key, "")
        return Document(page_content=text, metadata=meta, id=str(id_))

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        found = self.collection.get([str(i) for i in ids])
        return [self._document(d["id"], d["payload"]) for d in found if d is not None]

    def similarity_search_with_score_by_vector(
        self, embedding: Sequence[float], k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        hits = self.collection.search(
            np.asarray(embedding, dtype=np.float32),
            k=k,
            field="vector",
            filter=_filter(filter),
            exact=kwargs.get("exact", self.exact),
        )
        return [(self._document(i, p), float(s)) for i, s, p in zip(hits.ids, hits.scores.tolist(), hits.payloads)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        return self.similarity_search_with_score_by_vector(self._embedding.embed_query(query), k, filter, **kwargs)

    def similarity_search(self, query: str, k: int = 4, filter: dict | None = None, **kwargs: Any) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        if self.metric == "cosine":
            return lambda s: (1.0 + s) / 2.0  # cosine similarity in [-1, 1] -> [0, 1]
        if self.metric == "l2":
            return lambda s: 1.0 / (1.0 + max(-s, 0.0) ** 0.5)  # score is -squared distance
        return super()._select_relevance_score_fn()

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        hits = self.collection.search(
            np.asarray(embedding, dtype=np.float32), k=fetch_k, field="vector", filter=_filter(filter)
        )
        if len(hits) == 0:
            return []
        stored = self.collection.get(hits.ids, with_vectors=True)
        vectors = np.stack([d["vectors"]["vector"] for d in stored])
        chosen = maximal_marginal_relevance(
            np.asarray(embedding, dtype=np.float32), vectors, k=min(k, len(stored)), lambda_mult=lambda_mult
        )
        return [self._document(stored[i]["id"], stored[i]["payload"]) for i in chosen]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        return self.max_marginal_relevance_search_by_vector(
            self._embedding.embed_query(query), k, fetch_k, lambda_mult, filter, **kwargs
        )

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> "QuiverVectorStore":
        store = cls(embedding=embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store
