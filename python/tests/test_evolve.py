"""Embedding evolution from Python (issue 17): a field added to a populated collection and
backfilled, zero-shot labels written into a payload field, and a query adapter, each checked
against an oracle computed here: vectors of a collection that had the field from the start, the
label the label texts' vectors are nearest to, and the planted rotation of stored vectors."""

import json

import numpy as np
import pytest

import quiver
from conftest import SHARED

MODEL = "potion-base-8M"
N = 120


def scifact(n=N):
    with open(SHARED / "data" / "scifact" / "corpus.jsonl") as f:
        rows = [json.loads(line) for _, line in zip(range(n), f)]
    return [{"id": r["_id"], "payload": {"title": r["title"], "text": r["text"]}} for r in rows]


def emb_spec(dim=256):
    return {"type": "dense", "dim": dim, "metric": "cosine", "model": MODEL, "embed": ["title", "text"]}


def test_an_added_field_backfills_to_a_fresh_ingest(db):
    base = db.create_collection("a", {"mutable_max_rows": 40, "fields": {"n": {"type": "integer"}}})
    fresh = db.create_collection("b", {"fields": {"emb": emb_spec()}})
    docs = scifact()
    for i in range(0, N, 30):
        base.upsert(docs[i:i + 30])
    fresh.upsert(docs)
    base.flush()
    r = base.add_field("emb", emb_spec(), backfill=False)
    assert r["alter"]["pending_documents"] == N and r["backfill"] is None
    hits = base.search("cancer", k=3)
    assert hits.pending == {"emb": N} and len(hits) == 0
    done = base.backfill(batch=16)
    assert done["completed"] == ["emb"] and done["rows"] == N
    assert base.search("cancer", k=3).pending == {}
    ids = [d["id"] for d in docs]
    got = base.get(ids, with_vectors=True)
    want = fresh.get(ids, with_vectors=True)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g["vectors"]["emb"], w["vectors"]["emb"])
    with pytest.raises(quiver.NotFound, match="no-such-model"):
        base.add_field("e2", {**emb_spec(), "model": "no-such-model"})
    with pytest.raises(quiver.QuiverError, match="already exists"):
        base.add_field("emb", emb_spec())
    assert "e2" not in base.schema["fields"]
    assert base.drop_field("n")["field"] == "n"
    assert "n" not in base.schema["fields"]


def test_classify_writes_the_nearest_label(db):
    c = db.create_collection("c", {"fields": {"emb": emb_spec()}})
    docs = scifact()
    c.upsert(docs)
    labels = [
        {"label": "oncology", "description": "cancer, tumours and their treatment"},
        {"label": "neuroscience", "description": "the brain, neurons and cognition"},
        {"label": "genetics", "description": "genes, DNA and inheritance"},
    ]
    r = c.classify(labels, iterations=0)
    assert r["documents"] == N and r["written"] == N and r["added_field"] is True
    # The oracle: each document's nearest label text, by cosine, from the model directly.
    texts = [f'{l["label"]}: {l["description"]}' for l in labels]
    lv = quiver.embed(texts, model=MODEL)
    lv /= np.linalg.norm(lv, axis=1, keepdims=True)
    stored = c.get([d["id"] for d in docs], with_vectors=True)
    for d in stored:
        want = labels[int(np.argmax(lv @ d["vectors"]["emb"]))]["label"]
        assert d["payload"]["label"] == want, d["id"]
    assert sum(r["counts"].values()) == N
    for name, n in r["counts"].items():
        assert c.count({"field": "label", "eq": name}) == n
    with pytest.raises(quiver.InvalidInput, match="empty"):
        c.classify([])


def test_adapt_recovers_a_planted_rotation(db, rng):
    plain = db.create_collection("plain", {"fields": {"emb": emb_spec()}})
    docs = scifact(300)
    plain.upsert(docs)
    vecs = np.stack([d["vectors"]["emb"] for d in plain.get([d["id"] for d in docs], with_vectors=True)])
    q, _ = np.linalg.qr(rng.standard_normal((256, 256)))
    rotated = (vecs @ q.T).astype(np.float32)
    c = db.create_collection("r", {"fields": {"emb": emb_spec()}})
    c.add([d["id"] for d in docs], [d["payload"] for d in docs], {"emb": rotated})
    info = c.adapt("emb", MODEL)
    assert info["kind"] == "procrustes" and info["sample"] == 300
    assert info["holdout_cosine"] > 0.9999
    assert c.info()["adapters"][0]["field"] == "emb"
    qv = quiver.embed(["brain development in infants"], model=MODEL)[0]
    qv /= np.linalg.norm(qv)
    by_text = c.search("brain development in infants", k=5, exact=True)
    by_vec = c.search((q @ qv).astype(np.float32), k=5, exact=True)
    assert by_text.ids == by_vec.ids
    np.testing.assert_allclose(by_text.scores, by_vec.scores, atol=1e-4)
    assert c.remove_adapter("emb") is True and c.remove_adapter("emb") is False
    with pytest.raises(quiver.InvalidInput, match="relative"):
        c.adapt("emb", MODEL, method="relative")


def test_switch_model_reembeds_without_reimport(db):
    minilm = "all-MiniLM-L6-v2"
    docs = scifact(40)
    c = db.create_collection("s", {"mutable_max_rows": 20, "fields": {"emb": emb_spec()}})
    fresh = db.create_collection("m", {"fields": {"emb": {**emb_spec(384), "model": minilm}}})
    c.upsert(docs)
    fresh.upsert(docs)
    c.flush()
    with pytest.raises(quiver.QuiverError, match="already"):
        c.switch_model("emb", MODEL)
    r = c.switch_model("emb", minilm, backfill=False)
    assert r["alter"] == {"field": "emb~1", "pending_documents": 40, "rewritten_segments": 0}
    assert c.info()["switching"] == {"emb": "emb~1"}
    assert len(c.search("cancer", k=3)) == 3  # still the potion vectors
    done = c.backfill(batch=16)
    assert done["switched"] == ["emb"]
    assert c.schema["fields"]["emb"]["model"] == minilm and c.schema["fields"]["emb"]["dim"] == 384
    ids = [d["id"] for d in docs]
    for g, w in zip(c.get(ids, with_vectors=True), fresh.get(ids, with_vectors=True)):
        np.testing.assert_allclose(g["vectors"]["emb"], w["vectors"]["emb"], atol=1e-4)
