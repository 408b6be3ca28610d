"""Bad input raises the right exception, names the part at fault, and changes nothing stored."""

import numpy as np
import pytest

import quiver
from conftest import vector_schema


@pytest.fixture
def col(db, rng):
    c = db.create_collection("c", vector_schema(8))
    data = rng.standard_normal((50, 8)).astype(np.float32)
    c.add(list(range(50)), [{"text": f"t {i}", "n": i} for i in range(50)], {"emb": data})
    return c


def snapshot(c):
    docs, _ = c.scroll(limit=1000, with_vectors=True)
    return c.count(), [(d["id"], d["payload"], d["vectors"]["emb"].tobytes()) for d in docs]


CASES = [
    # (call, exception, words the message must contain)
    (lambda c: c.add([100], None, {"emb": np.zeros((1, 9), np.float32)}), quiver.InvalidInput, ["emb", "dimension"]),
    (lambda c: c.add([100, 101], None, {"emb": np.full((2, 8), np.nan, np.float32)}), quiver.InvalidInput, ["emb"]),
    (lambda c: c.add([100], None, {"emb": np.array([["a"] * 8])}), quiver.InvalidInput, ["emb", "dtype"]),
    (lambda c: c.add([100], None, {"nope": np.zeros((1, 8), np.float32)}), quiver.InvalidInput, ["nope"]),
    (lambda c: c.add([100, 101], None, {"emb": np.zeros((3, 8), np.float32)}), quiver.InvalidInput, ["3 rows", "2 ids"]),
    (lambda c: c.add([-1], None, None), quiver.InvalidInput, ["ids[0]"]),
    (lambda c: c.add([100], [{"n": "seven"}], {"emb": np.ones((1, 8), np.float32)}), quiver.InvalidInput, ["n"]),
    (lambda c: c.add([100], [{"n": 1}], None), quiver.InvalidInput, ["emb", "missing"]),
    (lambda c: c.upsert([{"id": 1, "payload": {}, "vectors": {"emb": [1.0] * 8}}, {"id": 2, "vectors": {"emb": [1.0] * 3}}]), quiver.InvalidInput, ["document 1", "emb"]),
    (lambda c: c.upsert([{"id": 1, "colour": "red"}]), quiver.InvalidInput, ["document 0", "colour"]),
    (lambda c: c.search(np.zeros(5, np.float32)), quiver.InvalidInput, ["emb"]),
    (lambda c: c.search(np.full(8, np.nan, np.float32)), quiver.InvalidInput, ["emb"]),
    (lambda c: c.search(np.zeros((2, 0), np.float32)), quiver.InvalidInput, ["zero-width"]),
    (lambda c: c.search(np.zeros(8, np.float32), field="other"), quiver.SchemaError, ["other"]),
    (lambda c: c.search("t", mode="sideways"), quiver.InvalidInput, ["sideways"]),
    (lambda c: c.search("t", filter={"field": "n", "between": 3}), quiver.InvalidInput, ["between"]),
    (lambda c: c.search("t", colour="red"), quiver.InvalidInput, ["colour"]),
    (lambda c: c.query({"prefetch": [{"dense": {"field": "emb", "vector": [1.0] * 8, "dims": 700}}]}), quiver.InvalidInput, ["dims", "700"]),
    (lambda c: c.delete(filter={"field": "n", "lt": "x"}), quiver.InvalidInput, ["n"]),
    (lambda c: c.get([{"a": 1}]), quiver.InvalidInput, ["ids[0]"]),
]


@pytest.mark.parametrize("i", range(len(CASES)))
def test_bad_input_changes_nothing(col, i):
    call, exc, words = CASES[i]
    before = snapshot(col)
    with pytest.raises(exc) as e:
        call(col)
    msg = str(e.value)
    print(f"{exc.__name__}: {msg}")
    for w in words:
        assert w in msg, (w, msg)
    assert isinstance(e.value, quiver.QuiverError)
    assert snapshot(col) == before


def test_other_dtypes_are_converted_once(col):
    v64 = np.arange(8, dtype=np.float64) + 1
    col.add([500], None, {"emb": v64.reshape(1, 8)})
    got = col.get(500, with_vectors=True)["vectors"]["emb"]
    np.testing.assert_allclose(got, v64 / np.linalg.norm(v64), rtol=1e-6)
    strided = np.asfortranarray(np.tile(v64, (2, 1)))
    assert col.search(strided, k=1, exact=True)[0].ids == [500]
    assert col.search(list(v64), k=1, exact=True).ids == [500]


def test_unknown_model_is_not_found(db):
    with pytest.raises(quiver.NotFound, match="no-such-model"):
        quiver.embed(["x"], model="no-such-model")
    with pytest.raises(quiver.InvalidInput, match="empty"):
        quiver.embed(["  "])
