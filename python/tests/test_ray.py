"""quiver.ray on a real Ray cluster of two nodes on loopback (ray.cluster_utils.Cluster).

The oracle is one local collection holding every document: in exact mode a sharded collection
must give its ids and scores, for dense, BM25, hybrid, filtered and fused plans.
"""

import os
import signal
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import quiver  # noqa: E402
import quiver.ray as qray  # noqa: E402
from conftest import RAY_DIM as DIM  # noqa: E402
from conftest import RAY_SCHEMA as SCHEMA  # noqa: E402
from conftest import SEED, cranfield, fill, local_copy, ray_cluster  # noqa: E402
from conftest import same_hits as same  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster(workers=1) as c:
        yield c


@pytest.fixture(scope="module")
def corpus():
    return cranfield(shards=3)


@pytest.fixture(scope="module")
def local(tmp_path_factory, corpus):
    return local_copy(tmp_path_factory.mktemp("local"), corpus)


@pytest.fixture(scope="module")
def sharded(cluster, tmp_path_factory, corpus):
    ids, payloads, vectors, _, _ = corpus
    sc = qray.create_sharded("cran", SCHEMA, shards=3, root=str(tmp_path_factory.mktemp("sharded")), timeout_s=60)
    fill(sc, ids, payloads, vectors)
    return sc


def test_shards_spread_and_route_by_a_stable_hash(sharded, corpus):
    ids = corpus[0]
    placement = sharded.placement()
    nodes = {r["node"] for row in placement for r in row}
    pids = {r["pid"] for row in placement for r in row}
    print(f"placement: {placement}")
    # Three shards round-robin over two nodes.
    assert len(nodes) == 2 and len(pids) == 3 and os.getpid() not in pids
    assert placement[0][0]["node"] == placement[2][0]["node"] != placement[1][0]["node"]
    assert sharded.count() == len(ids)
    per_shard = [sum(1 for i in ids if qray.shard_of(i, 3) == s) for s in range(3)]
    assert min(per_shard) > len(ids) / 3 * 0.8, per_shard
    # The hash is stable across processes (not Python's salted hash).
    assert [qray.shard_of(i, 3) for i in (1, 2, 3, "a", "b")] == [qray.shard_of(i, 3) for i in (1, 2, 3, "a", "b")]
    got = sharded.get([ids[0], ids[-1], 999_999])
    assert got[0]["payload"]["bucket"] == 0 and got[1]["id"] == ids[-1] and got[2] is None


def test_exact_results_equal_one_collection(sharded, local, corpus):
    _, _, _, queries, qvecs = corpus
    checked = 0
    for qi, (text, v) in enumerate(zip(queries, qvecs)):
        flt = {"field": "bucket", "lt": 3} if qi % 2 else None
        cases = {
            "dense": dict(query=v, exact=True, filter=flt),
            "bm25": dict(query=text, mode="bm25", filter=flt),
            "hybrid": dict(query=text, mode="hybrid", vector=v, exact=True, filter=flt),
            "dense offset": dict(query=v, exact=True, k=5, offset=7),
        }
        for what, kw in cases.items():
            want = local.search(**kw)
            got = sharded.search(**kw)
            same(got, want, f"q{qi} {what}")
            assert got.missing_shards == [] and not got.partial
            assert dict(zip(got.ids, got.payloads)) == dict(zip(want.ids, want.payloads)), what
            checked += 1
        plan = {
            "prefetch": [
                {"dense": {"field": "emb", "vector": v.tolist(), "exact": True}, "limit": 50},
                {"bm25": {"field": "body", "text": text}, "limit": 50},
            ],
            "fusion": {"score": {"norm": "minmax", "weights": [1.0, 0.5]}},
            "limit": 10,
            "offset": 2,
        }
        same(sharded.query(plan), local.query(plan), f"q{qi} score fusion plan")
        checked += 1
    print(f"{checked} sharded queries equal one collection's (dense, bm25, hybrid, filters, offset, fusion)")


def test_bm25_needs_the_whole_corpus_statistics(sharded, local, corpus):
    # Without the gathered statistics each shard would score with its own N and df: the scores
    # of one shard alone differ from the one-collection scores of the same documents.
    text = corpus[3][0]
    one = local.search(text, mode="bm25", k=50)
    want = dict(zip(one.ids, one.scores))
    got = sharded.search(text, mode="bm25", k=50)
    assert all(abs(want[i] - s) < 1e-5 for i, s in zip(got.ids, got.scores))
    actor = sharded._actors[0][0]
    alone = ray.get(actor.run.remote([{"mode": "bm25", "text": text, "limit": 50}]))[0]
    assert any(abs(want[i] - s) > 1e-3 for i, s in zip(alone[0], alone[1]) if i in want)


def test_searches_from_many_threads(sharded, local, corpus):
    _, _, _, queries, qvecs = corpus
    want = [local.search(q, mode="hybrid", vector=v, exact=True) for q, v in zip(queries, qvecs)]
    errors = []

    def work():
        try:
            for (q, v), w in zip(zip(queries, qvecs), want):
                same(sharded.search(q, mode="hybrid", vector=v, exact=True), w, q)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # A 2-D array is a batch: one ShardedHits per row.
    batch = sharded.search(qvecs[:4], exact=True)
    for h, v in zip(batch, qvecs[:4]):
        same(h, local.search(v, exact=True), "batch row")


def test_bad_input_is_refused_and_changes_nothing(sharded, corpus):
    n = sharded.count()
    with pytest.raises(quiver.InvalidInput):
        sharded.upsert([{"payload": {"text": "no id"}}])
    with pytest.raises(quiver.InvalidInput):
        sharded.add([1, 2], None, {"emb": np.ones((3, DIM), np.float32)})
    with pytest.raises(quiver.QuiverError, match="dim|dimension"):
        sharded.add([5_000_001], None, {"emb": np.ones((1, DIM + 1), np.float32)})
    with pytest.raises(quiver.QuiverError, match="nope"):
        sharded.search(corpus[4][0], field="nope", exact=True)
    assert sharded.count() == n
    with pytest.raises(quiver.AlreadyExists):
        qray.create_sharded("cran", SCHEMA, shards=3, root=sharded.root)
    with pytest.raises(quiver.NotFound):
        qray.open_sharded(sharded.root + "-missing")


def test_a_killed_shard_restarts_and_keeps_every_acknowledged_write(sharded, corpus):
    ids, _, _, queries, qvecs = corpus
    before = sharded.search(qvecs[0], exact=True)
    # Acknowledged writes just before the kill.
    new_ids = list(range(10_000, 10_050))
    sharded.add(new_ids, [{"title": "late", "text": "late arrival", "bucket": 99}] * 50,
                {"emb": np.ones((50, DIM), np.float32)})
    victim = sharded.placement()[1][0]
    os.kill(victim["pid"], signal.SIGKILL)
    # Prove the kill landed: the process is gone.
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            os.kill(victim["pid"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"shard process {victim['pid']} still alive after SIGKILL")
    # Calls wait for Ray to restart the actor, which reopens the same directory.
    assert sharded.count() == len(ids) + 50
    after = sharded.placement()[1][0]
    assert after["pid"] != victim["pid"] and after["path"] == victim["path"]
    assert sharded.count({"field": "bucket", "eq": 99}) == 50
    same(sharded.search(qvecs[0], exact=True, filter={"field": "bucket", "lt": 10}), before, "after restart")
    sharded.delete(ids=new_ids)
    assert sharded.count() == len(ids)
    print(f"killed shard 1 (pid {victim['pid']}); restarted as pid {after['pid']}, nothing acknowledged lost")


def test_a_new_driver_handle_reattaches(sharded, local, corpus):
    again = qray.open_sharded(sharded.root)
    assert (again.shards, again.replicas, again.name) == (3, 1, "cran")
    assert again.count() == sharded.count()
    text = corpus[3][1]
    same(again.search(text, mode="bm25"), local.search(text, mode="bm25"), "reattached")


def test_ray_data_write_embeds_in_workers_and_equals_one_collection(cluster, tmp_path, corpus):
    # Documents as a Ray Dataset; potion-base-8M (a static model) embeds title + text in the
    # Ray Data workers; the oracle is one local collection upserting the same payloads (the
    # engine embedding them itself).
    ids, payloads, _, queries, _ = corpus
    schema = {"fields": {
        "emb": {"type": "dense", "dim": 256, "metric": "cosine", "model": "potion-base-8M", "embed": ["title", "text"]},
        "body": {"type": "text", "source": ["title", "text"]},
        "bucket": {"type": "integer"},
        "shard": {"type": "integer"},
    }}
    n = 600
    rows = [{"id": i, **p} for i, p in zip(ids, payloads) if p["title"] or p["text"]][:n]
    ids = [r["id"] for r in rows]
    local = quiver.connect(tmp_path / "local").create_collection("w", schema)
    local.upsert([{"id": r["id"], "payload": {k: v for k, v in r.items() if k != "id"}} for r in rows])
    sc = qray.create_sharded("w", schema, shards=3, root=str(tmp_path / "sharded"), timeout_s=60)
    ds = ray.data.from_items(rows)
    report = qray.write(ds, sc, batch_size=100, progress=False)
    print(f"quiver.ray.write: {report}")
    assert report["rows"] == n and sum(report["per_shard"]) == n and min(report["per_shard"]) > 0
    assert sc.count() == n
    got = sc.get(ids, with_vectors=True)
    want = local.get(ids, with_vectors=True)
    assert [g["payload"] for g in got] == [w["payload"] for w in want]
    worst = min(float(np.dot(g["vectors"]["emb"], w["vectors"]["emb"])) for g, w in zip(got, want))
    print(f"worker-embedded vectors against the engine's own: min cosine {worst:.7f}")
    assert worst >= 0.99999
    for q in queries[:6]:
        same(sc.search(q, mode="hybrid", exact=True), local.search(q, mode="hybrid", exact=True), q)
    # A rerun (as after a failure) upserts by id: nothing is duplicated.
    again = qray.write(ds, sc, batch_size=100, progress=False)
    assert again["rows"] == n and sc.count() == n


def test_multi_vector_plans_equal_one_collection(sharded, tmp_path):
    # Token-vector documents (3 to 6 seeded random vectors of 8 dims each), upserted by id;
    # exact MaxSim scores are the documents' own, so the shards' lists merge by score.
    rng = np.random.default_rng(SEED)
    schema = {"fields": {"tok": {"type": "multi", "dim": 8, "metric": "cosine"}, "n": {"type": "integer"}}}
    docs = [{"id": i, "payload": {"n": i % 7}, "multi": {"tok": rng.standard_normal((int(rng.integers(3, 7)), 8)).astype(np.float32)}}
            for i in range(300)]
    local = quiver.connect(tmp_path / "local").create_collection("m", schema)
    local.upsert(docs)
    sc = qray.create_sharded("m", schema, shards=3, root=str(tmp_path / "sharded"), timeout_s=60)
    sc.upsert(docs)
    assert sc.count() == 300
    for qi in range(8):
        q = rng.standard_normal((4, 8)).astype(np.float32).tolist()
        plan = {"prefetch": [{"multi": {"field": "tok", "vectors": q, "exact": True}, "limit": 20}], "limit": 10}
        if qi % 2:
            plan["filter"] = {"field": "n", "lt": 3}
        same(sc.query(plan), local.query(plan), f"multi plan {qi}")


def test_rescore_plans_are_at_least_as_good_as_one_collection(sharded, local, corpus):
    # A plan with a rescore stage runs whole on each shard: each rescores its own candidates, a
    # superset of what one collection would rescore, so the merged answer's rescored scores are
    # at least the one-collection answer's, rank by rank.
    _, _, _, queries, qvecs = corpus
    for text, v in zip(queries[:6], qvecs[:6]):
        plan = {
            "prefetch": [
                {"dense": {"field": "emb", "vector": v.tolist(), "exact": True}, "limit": 30},
                {"bm25": {"field": "body", "text": text}, "limit": 30},
            ],
            "rescore": [{"dense": {"field": "emb"}, "limit": 10}],
            "limit": 10,
        }
        got, want = sharded.query(plan), local.query(plan)
        assert len(got) == len(want) == 10 and got.missing_shards == []
        assert np.all(got.scores >= want.scores - 1e-6), (got.scores, want.scores)
        # The scores are the documents' own (exact cosine), whichever shard rescored them.
        every = local.search(v, exact=True, k=1400, with_payload=False)
        exact = dict(zip(every.ids, every.scores))
        assert all(abs(exact[i] - s) < 1e-5 for i, s in zip(got.ids, got.scores))
