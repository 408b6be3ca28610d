"""LangChain's own standard test suite for vector stores, unmodified, against QuiverVectorStore."""

import pytest

pytest.importorskip("langchain_tests")

from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402

import quiver  # noqa: E402
from quiver.langchain import QuiverVectorStore  # noqa: E402


class TestQuiverVectorStore(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self, tmp_path):
        # A fresh, empty database per test.
        yield QuiverVectorStore(embedding=self.get_embeddings(), path=str(tmp_path / "db"), collection="standard")


def test_filters_scores_mmr_and_retriever(tmp_path):
    """Beyond the standard suite: filters, scores against numpy, MMR, as_retriever, and
    QuiverEmbeddings computed by the engine."""
    import numpy as np
    from langchain_core.documents import Document
    from langchain_core.vectorstores.utils import maximal_marginal_relevance

    from quiver.langchain import QuiverEmbeddings

    emb = QuiverEmbeddings()
    texts = [
        "Quokkas are small marsupials on Rottnest Island.",
        "Wombats dig deep burrows in Australian forests.",
        "The central bank raised interest rates again.",
        "Quokka selfies are popular with tourists.",
        "Sourdough bread needs a long fermentation.",
    ]
    meta = [{"topic": "animals"}, {"topic": "animals"}, {"topic": "finance"}, {"topic": "animals"}, {"topic": "food"}]
    store = QuiverVectorStore.from_texts(
        texts, emb, metadatas=meta, ids=[f"d{i}" for i in range(5)], path=str(tmp_path / "db"), collection="lc"
    )
    vecs = np.asarray(emb.embed_documents(texts), dtype=np.float32)
    np.testing.assert_allclose(vecs[0], quiver.embed(texts[0])[0], atol=1e-6)
    q = np.asarray(emb.embed_query("quokka photos"), dtype=np.float32)
    cos = vecs @ q / np.linalg.norm(vecs, axis=1) / np.linalg.norm(q)
    got = store.similarity_search_with_score("quokka photos", k=5)
    assert [d.id for d, _ in got] == [f"d{i}" for i in np.argsort(-cos)]
    np.testing.assert_allclose([s for _, s in got], np.sort(cos)[::-1], atol=1e-5)
    # Filters: LangChain's shorthand and Quiver's own shape.
    only = store.similarity_search("quokka photos", k=5, filter={"topic": "finance"})
    assert [d.id for d in only] == ["d2"] and only[0].metadata == {"topic": "finance"}
    assert {d.id for d in store.similarity_search("x", k=5, filter={"field": "topic", "in": ["food", "finance"]})} == {"d2", "d4"}
    assert [d.id for d in store.similarity_search_by_vector(vecs[4].tolist(), k=1)] == ["d4"]
    # MMR against langchain-core's own maximal_marginal_relevance over the stored vectors.
    fetched = [f"d{i}" for i in np.argsort(-cos)[:4]]
    want = maximal_marginal_relevance(q, vecs[[int(i[1:]) for i in fetched]], k=2, lambda_mult=0.3)
    mmr = store.max_marginal_relevance_search("quokka photos", k=2, fetch_k=4, lambda_mult=0.3)
    assert [d.id for d in mmr] == [fetched[i] for i in want]
    # Relevance scores in [0, 1] and a retriever.
    rel = store.similarity_search_with_relevance_scores("quokka photos", k=2)
    assert all(0.0 <= s <= 1.0 for _, s in rel)
    docs = store.as_retriever(search_kwargs={"k": 2}).invoke("quokka photos")
    assert [d.id for d in docs] == [d.id for d, _ in got[:2]]
    assert isinstance(docs[0], Document)
    # Delete by filter; a reopened store sees the same collection.
    store.delete(filter={"topic": "animals"})
    again = QuiverVectorStore(emb, collection="lc", database=store.db)
    assert sorted(d.id for d in again.get_by_ids([f"d{i}" for i in range(5)])) == ["d2", "d4"]
