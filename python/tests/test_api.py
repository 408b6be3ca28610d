"""The Python API against oracles: numpy brute force for search, a dict for documents."""

import json

import numpy as np
import pytest

import quiver
from conftest import SHARED, brute_force, vector_schema

N, DIM = 2000, 32


def load(db, rng, metric="cosine", n=N, dim=DIM, name="vecs"):
    col = db.create_collection(name, vector_schema(dim, metric))
    data = rng.standard_normal((n, dim)).astype(np.float32)
    ids = list(range(n))
    payloads = [{"text": f"note {i} about item{i % 7}", "n": i, "tag": f"t{i % 10}"} for i in ids]
    r = col.add(ids, payloads, {"emb": data})
    assert r["count"] == n
    return col, data


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_exact_search_equals_numpy_brute_force(db, rng, metric):
    col, data = load(db, rng, metric)
    queries = rng.standard_normal((20, DIM)).astype(np.float32)
    for q in queries:
        hits = col.search(q, k=10, exact=True)
        want, scores = brute_force(data, q, 10, metric)
        assert hits.ids == want
        np.testing.assert_allclose(hits.scores, scores, rtol=1e-4, atol=1e-4)
        assert hits.scores.dtype == np.float32
        assert hits.mode == "dense"


def test_batch_search_is_the_single_searches(db, rng):
    col, data = load(db, rng)
    col.flush()  # a sealed segment: HNSW
    queries = rng.standard_normal((64, DIM)).astype(np.float32)
    batch = col.search(queries, k=10)
    assert isinstance(batch, list) and len(batch) == 64
    recall = []
    for q, h in zip(queries, batch):
        assert h.ids == col.search(q, k=10).ids
        want, _ = brute_force(data, q, 10, "cosine")
        recall.append(len(set(h.ids) & set(want)) / 10)
    # HNSW (m=16, ef=128) on 2,000 random 32-d vectors.
    print(f"HNSW recall@10 {np.mean(recall):.3f}")
    assert np.mean(recall) >= 0.95
    exact = col.search(queries, k=10, exact=True)
    for q, h in zip(queries, exact):
        assert h.ids == brute_force(data, q, 10, "cosine")[0]


def test_filtered_search_equals_brute_force_on_the_matching_rows(db, rng):
    col, data = load(db, rng)
    n = np.arange(N)
    for flt, allowed in [
        ({"field": "n", "lt": 20}, n < 20),  # 1% selectivity
        ({"field": "tag", "eq": "t3"}, n % 10 == 3),
    ]:
        for q in rng.standard_normal((5, DIM)).astype(np.float32):
            hits = col.search(q, k=10, filter=flt, exact=True)
            assert hits.ids == brute_force(data, q, 10, "cosine", allowed)[0]
            assert all(allowed[i] for i in hits.ids)
        assert col.count(flt) == int(allowed.sum())


def test_bm25_and_hybrid_text_search(db, rng):
    col, data = load(db, rng)
    hits = col.search("item3 note 1234", mode="bm25", k=5)
    assert hits.ids[0] == 1234
    assert hits.mode == "bm25"
    assert all(p["text"].split()[1] == str(i) or "item3" in p["text"] for i, p in zip(hits.ids, hits.payloads))
    # Hybrid with a vector for the dense side: the document near the vector and matching the text
    # wins both lists.
    hy = col.search("note 1234", mode="hybrid", vector=data[1234], k=5)
    assert hy.mode == "hybrid" and hy.ids[0] == 1234
    # The same hybrid as a plan.
    plan = {
        "prefetch": [
            {"dense": {"field": "emb", "vector": data[1234].tolist()}, "limit": 100},
            {"bm25": {"field": "body", "text": "note 1234"}, "limit": 100},
        ],
        "fusion": {"rrf": {"k": 60}},
        "limit": 5,
    }
    res = col.query(plan)
    assert res.mode == "plan"
    assert res.ids == hy.ids
    np.testing.assert_allclose(res.scores, hy.scores, rtol=1e-6)
    assert len(res.explain) >= 2


def test_documents_round_trip_against_a_dict(db, rng):
    col = db.create_collection("docs", vector_schema(4))
    oracle = {}
    for batch in range(3):
        docs = []
        for j in range(50):
            i = int(rng.integers(0, 100))
            v = rng.standard_normal(4).astype(np.float32)
            key = i if i % 2 else f"doc-{i}"
            payload = {"text": f"text {i} {batch}", "n": i, "tag": "even" if i % 2 == 0 else "odd"}
            docs.append({"id": key, "payload": payload, "vectors": {"emb": v}})
        # Later duplicates in one batch are an error; keep the last per id as the oracle does.
        last = {}
        for d in docs:
            last[d["id"]] = d
        col.upsert(list(last.values()))
        oracle.update({k: d for k, d in last.items()})
    assert col.count() == len(oracle) == len(col)
    keys = list(oracle)
    got = col.get(keys + ["missing"], with_vectors=True)
    assert got[-1] is None
    for k, g in zip(keys, got):
        assert g["id"] == k
        assert g["payload"] == oracle[k]["payload"]
        v = oracle[k]["vectors"]["emb"]
        np.testing.assert_allclose(g["vectors"]["emb"], v / np.linalg.norm(v), rtol=1e-5, atol=1e-6)
        assert g["vectors"]["emb"].dtype == np.float32
    assert col.get(keys[0])["id"] == keys[0]
    ints = np.array([k for k in keys if isinstance(k, int)][:3])
    assert [d["id"] for d in col.get(ints)] == ints.tolist()
    assert col.get(ints[0])["id"] == int(ints[0])
    # scroll: every document once, in id order, across pages.
    seen, cursor = [], None
    while True:
        page, cursor = col.scroll(after=cursor, limit=7)
        seen += [d["id"] for d in page]
        if cursor is None:
            break
    assert sorted(seen, key=lambda x: (isinstance(x, str), x)) == sorted(oracle, key=lambda x: (isinstance(x, str), x))
    assert len(seen) == len(set(seen))
    evens = col.scroll(limit=1000, filter={"field": "tag", "eq": "even"})[0]
    assert {d["id"] for d in evens} == {k for k, d in oracle.items() if d["payload"]["tag"] == "even"}
    # delete by ids, then by filter.
    gone = keys[:5]
    assert col.delete(ids=gone)["count"] == 5
    assert all(g is None for g in col.get(gone))
    col.delete(filter={"field": "tag", "eq": "even"})
    left = {k for k, d in oracle.items() if k not in gone and d["payload"]["tag"] == "odd"}
    assert col.count() == len(left)
    with pytest.raises(quiver.InvalidInput, match="either ids or filter"):
        col.delete()


def test_collections_list_and_drop(db):
    db.create_collection("a", vector_schema(3))
    db.create_collection("b", json.dumps(vector_schema(3)))
    assert db.list_collections() == ["a", "b"]
    with pytest.raises(quiver.AlreadyExists):
        db.create_collection("a", vector_schema(3))
    assert db.collection("b").schema["fields"]["emb"]["dim"] == 3
    assert db.collection("a").info()["documents"] == 0
    db.drop_collection("a")
    assert db.list_collections() == ["b"]
    with pytest.raises(quiver.NotFound, match="a"):
        db.collection("a")
    with pytest.raises(quiver.SchemaError):
        db.create_collection("c", {"fields": {"emb": {"type": "dense", "dim": 0}}})


def test_results_as_arrow_and_pandas(db, rng):
    pa = pytest.importorskip("pyarrow")
    pd = pytest.importorskip("pandas")
    col, data = load(db, rng, n=200)
    hits = col.search(data[5], k=4, exact=True)
    t = hits.to_arrow()
    assert isinstance(t, pa.Table)
    assert t.column("id").to_pylist() == hits.ids
    assert t.column("n").to_pylist() == hits.ids
    df = hits.to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert list(df["id"]) == hits.ids
    np.testing.assert_allclose(df["score"].to_numpy(), hits.scores, rtol=1e-6)
    assert [h["id"] for h in hits] == hits.ids


def golden(model):
    path = SHARED / "golden" / f"{model}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("model", ["all-MiniLM-L6-v2", "potion-base-8M"])
def test_embed_matches_the_golden_vectors(model):
    rows = golden(model)[:16]
    got = quiver.embed([r["text"] for r in rows], model=model)
    assert got.dtype == np.float32 and got.shape == (len(rows), len(rows[0]["vector"]))
    for v, r in zip(got, rows):
        w = np.asarray(r["vector"], dtype=np.float64)
        cos = float(v @ w / np.linalg.norm(v) / np.linalg.norm(w))
        assert cos >= 0.9999, (r["text"], cos)
    prefix = quiver.embed([rows[0]["text"]], model=model, dims=64)
    assert prefix.shape == (1, 64)
    w = got[0][:64] / np.linalg.norm(got[0][:64])
    np.testing.assert_allclose(prefix[0], w, atol=1e-5)


def test_text_fields_are_embedded_by_the_engine(db):
    schema = {
        "fields": {
            "emb": {"type": "dense", "dim": 384, "metric": "cosine", "model": "all-MiniLM-L6-v2", "embed": ["text"]},
            "body": {"type": "text", "source": ["text"]},
        }
    }
    col = db.create_collection("notes", schema)
    texts = [
        "Quokkas are small marsupials that live on Rottnest Island.",
        "The stock market fell sharply on Tuesday.",
        "A recipe for sourdough bread with a long fermentation.",
    ]
    col.add([1, 2, 3], documents=texts)
    stored = col.get([1], with_vectors=True)[0]["vectors"]["emb"]
    np.testing.assert_allclose(stored, quiver.embed([texts[0]])[0], atol=1e-5)
    assert col.search("who likes quokkas?", mode="dense", k=1).ids == [1]
    assert col.search("bread baking", mode="hybrid", k=3).ids[0] == 3


def test_bulk_load_builds_sealed_segments(db, rng):
    col = db.create_collection("bulk", vector_schema(DIM))
    data = rng.standard_normal((3000, DIM)).astype(np.float32)
    ids = list(range(3000))
    payloads = [{"text": f"row {i}", "n": i} for i in ids]
    with pytest.raises(quiver.InvalidInput, match="document 2999"):
        bad = data.copy()
        bad[2999, 0] = np.nan
        col.bulk_load(ids, payloads, {"emb": bad}, segment_rows=1000)
    assert col.count() == 0
    with pytest.raises(quiver.InvalidInput, match="segment_rows"):
        col.bulk_load(ids, payloads, {"emb": data}, segment_rows=0)
    assert col.bulk_load(ids, payloads, {"emb": data}, segment_rows=1000)["count"] == 3000
    info = col.info()
    assert info["mutable_rows"] == 0 and len(info["segments"]) == 3
    recall = []
    for q in rng.standard_normal((30, DIM)).astype(np.float32):
        want = brute_force(data, q, 10, "cosine")[0]
        assert col.search(q, k=10, exact=True).ids == want
        recall.append(len(set(col.search(q, k=10).ids) & set(want)) / 10)
    print(f"HNSW recall@10 over 3 bulk-loaded segments {np.mean(recall):.3f}")
    assert np.mean(recall) >= 0.95
    assert col.get(2999)["payload"] == {"text": "row 2999", "n": 2999}
