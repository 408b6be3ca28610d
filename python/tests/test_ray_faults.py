"""quiver.ray under faults, on a loopback Ray cluster of three nodes: shard processes SIGKILLed
mid-ingest and mid-query, a replica down while queries run, and a whole node removed.

Guarantees checked: no acknowledged write is lost; with two replicas every query keeps answering
whole; with one, a query during an outage is whole and exact, or marked partial
(`missing_shards`) and exact over the shards that answered: never silently smaller.
"""

import os
import signal
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import quiver.ray as qray  # noqa: E402
from conftest import RAY_DIM as DIM  # noqa: E402
from conftest import RAY_SCHEMA as SCHEMA  # noqa: E402
from conftest import cranfield, fill, local_copy, ray_cluster  # noqa: E402
from conftest import same_hits as same  # noqa: E402

SHARDS = 2


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster(workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def corpus():
    return cranfield(shards=SHARDS)


@pytest.fixture(scope="module")
def local(tmp_path_factory, corpus):
    return local_copy(tmp_path_factory.mktemp("local"), corpus)


def kill(pid):
    """SIGKILL `pid` and wait until the process is gone (the kill landed); a process already
    gone is fine."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"process {pid} still alive 30 s after SIGKILL")


class Querier(threading.Thread):
    """Runs exact dense and BM25 queries in a loop until stopped, checking each answer against
    the local collection: whole and equal, or partial and equal over the shards that answered."""

    def __init__(self, sc, local, corpus):
        super().__init__(daemon=True)
        self.sc, self.local, self.corpus = sc, local, corpus
        self.stop, self.whole, self.partial, self.errors = threading.Event(), 0, 0, []

    def run(self):
        _, _, _, queries, qvecs = self.corpus
        i = 0
        while not self.stop.is_set():
            q, v = queries[i % len(queries)], qvecs[i % len(qvecs)]
            i += 1
            try:
                for kw in (dict(query=v, exact=True), dict(query=q, mode="bm25")):
                    got = self.sc.search(**kw)
                    if got.missing_shards:
                        self.partial += 1
                        alive = [s for s in range(SHARDS) if s not in got.missing_shards]
                        want = self.local.search(**kw, filter={"field": "shard", "in": alive})
                        if "mode" in kw:
                            # BM25 statistics come from the shards that answered (a smaller
                            # corpus than the local one): the ids must be theirs.
                            assert set(got.ids) <= set(self.all_ids(alive)), got.ids
                            continue
                    else:
                        self.whole += 1
                        want = self.local.search(**kw)
                    same(got, want, f"{kw.get('mode', 'dense')} during the fault")
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(e))
                return

    def all_ids(self, alive):
        ids, payloads = self.corpus[0], self.corpus[1]
        return [i for i, p in zip(ids, payloads) if p["shard"] in alive]


class Ingester(threading.Thread):
    """Adds the corpus to `sc` in batches of 20 from a thread, recording the batches
    acknowledged and those that failed."""

    def __init__(self, sc, corpus):
        super().__init__(daemon=True)
        self.sc, self.corpus = sc, corpus
        self.batches = list(range(0, len(corpus[0]), 20))
        self.acked, self.errors = [], []
        self.start()

    def run(self):
        ids, payloads, vectors, _, _ = self.corpus
        for s in self.batches:
            try:
                self.sc.add(ids[s:s + 20], payloads[s:s + 20], {"emb": vectors[s:s + 20]})
                self.acked.append(s)
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append((s, repr(e)))

    def after(self, n):
        """Waits until `n` batches are acknowledged (or one failed, or 60 s); the count then."""
        deadline = time.time() + 60
        while len(self.acked) < n and not self.errors and time.time() < deadline:
            time.sleep(0.005)
        return len(self.acked)


def test_two_replicas_keep_answering_while_one_is_killed(cluster, tmp_path, local, corpus):
    ids, payloads, vectors, _, _ = corpus
    sc = qray.create_sharded("cran", SCHEMA, shards=SHARDS, root=str(tmp_path / "r2"), replicas=2, timeout_s=5)
    fill(sc, ids, payloads, vectors)
    placement = sc.placement()
    print(f"placement: {placement}")
    assert all(row[0]["node"] != row[1]["node"] for row in placement), "replicas of a shard share a node"
    q = Querier(sc, local, corpus)
    q.start()
    time.sleep(1.0)
    victim = placement[0][1]
    before = q.whole
    kill(victim["pid"])
    killed_at = q.whole
    # placement() waits for the killed replica's restart; queries go on meanwhile.
    after = sc.placement()[0][1]
    restarted_at = q.whole
    time.sleep(0.5)
    q.stop.set()
    q.join(60)
    assert not q.errors, q.errors
    print(f"replicas=2: {before} whole answers before the kill, {restarted_at - killed_at} while the "
          f"replica restarted, {q.whole - restarted_at} after; {q.partial} partial")
    assert before > 0 and restarted_at > killed_at and q.partial == 0
    assert after["pid"] != victim["pid"] and after["path"] == victim["path"]
    # Writes go to both replicas; each replica holds every acknowledged write on its own.
    new = list(range(20_000, 20_020))
    sc.add(new, [{"title": "t", "text": "new", "bucket": 77, "shard": qray.shard_of(i, SHARDS)} for i in new],
           {"emb": np.ones((20, DIM), np.float32)})
    for s in range(SHARDS):
        counts = [ray.get(a.count.remote({"field": "bucket", "eq": 77})) for a in sc._actors[s]]
        want = sum(1 for i in new if qray.shard_of(i, SHARDS) == s)
        assert counts == [want, want], (s, counts)
    assert sc.count() == len(ids) + len(new)


def test_a_shard_killed_mid_ingest_loses_no_acknowledged_write(cluster, tmp_path, local, corpus):
    ids = corpus[0]
    sc = qray.create_sharded("cran", SCHEMA, shards=SHARDS, root=str(tmp_path / "r1"), timeout_s=30)
    victim = sc.placement()[1][0]
    ing = Ingester(sc, corpus)
    at_kill = ing.after(5)
    kill(victim["pid"])
    ing.join(120)
    batches, acked, errors = ing.batches, ing.acked, ing.errors
    print(f"killed shard 1 (pid {victim['pid']}) with {at_kill} of {len(batches)} batches acknowledged; "
          f"then {len(acked)} acknowledged, {len(errors)} failed")
    # The kill landed mid-ingest, and the batch in flight was retried once Ray restarted the shard.
    assert 0 < at_kill < len(batches)
    assert not errors and len(acked) == len(batches), errors
    after = sc.placement()[1][0]
    assert after["pid"] != victim["pid"]
    # Every document is there once, with the vectors the one-collection oracle stores.
    assert sc.count() == len(ids)
    got = sc.get(ids, with_vectors=True)
    want = local.get(ids, with_vectors=True)
    assert all(np.array_equal(g["vectors"]["emb"], w["vectors"]["emb"]) for g, w in zip(got, want))
    assert [g["payload"] for g in got] == [w["payload"] for w in want]


def test_a_node_removed_mid_query_gives_whole_or_marked_partial_answers(cluster, tmp_path, local, corpus):
    ids, payloads, vectors, _, _ = corpus
    sc = qray.create_sharded("cran", SCHEMA, shards=SHARDS, root=str(tmp_path / "node"), timeout_s=1.0)
    fill(sc, ids, payloads, vectors)
    head = ray.get_runtime_context().get_node_id()
    placement = sc.placement()
    print(f"placement: {placement}")
    # A worker node hosting a shard (not the head, which runs the driver).
    worker = next(n for n in cluster.worker_nodes
                  if any(r["node"] == n.node_id for row in placement for r in row) and n.node_id != head)
    lost = [s for s, row in enumerate(placement) if row[0]["node"] == worker.node_id]
    q = Querier(sc, local, corpus)
    q.start()
    time.sleep(1.0)
    cluster.remove_node(worker, allow_graceful=False)
    # Wait until answers are whole again: the lost shards restarted on another node.
    deadline = time.time() + 90
    while time.time() < deadline and not q.errors:
        w = q.whole
        time.sleep(2.0)
        if q.partial and q.whole > w + 2:
            break
    q.stop.set()
    q.join(60)
    assert not q.errors, q.errors
    print(f"node removed (shards {lost}): {q.whole} whole answers, {q.partial} marked partial")
    assert q.partial > 0, "no query saw the outage"
    after = sc.placement()
    assert all(after[s][0]["node"] != worker.node_id for s in lost)
    assert sc.count() == len(ids)


def test_a_node_removed_mid_ingest_loses_no_acknowledged_write(cluster, tmp_path, local, corpus):
    # Runs after the test above: the head and one worker node are left.
    ids = corpus[0]
    sc = qray.create_sharded("cran", SCHEMA, shards=SHARDS, root=str(tmp_path / "node-ingest"), timeout_s=30)
    head = ray.get_runtime_context().get_node_id()
    placement = sc.placement()
    worker = next(n for n in cluster.worker_nodes if n.node_id != head
                  and any(r["node"] == n.node_id for row in placement for r in row))
    on_worker = [r["pid"] for row in placement for r in row if r["node"] == worker.node_id]
    ing = Ingester(sc, corpus)
    ing.after(5)
    cluster.remove_node(worker, allow_graceful=False)
    # The node's processes go with it: its shard actors are killed now if Ray has not yet, so
    # the loss lands while the ingest runs (proved by the count below).
    for pid in on_worker:
        kill(pid)
    at_removal = len(ing.acked)
    ing.join(180)
    batches, acked, errors = ing.batches, ing.acked, ing.errors
    print(f"node removed with {at_removal} of {len(batches)} batches acknowledged; "
          f"then {len(acked)} acknowledged, {len(errors)} failed")
    assert on_worker and 0 < at_removal < len(batches)
    assert not ing.is_alive() and not errors and len(acked) == len(batches), errors
    assert all(r["node"] != worker.node_id for row in sc.placement() for r in row)
    assert sc.count() == len(ids)
    got = sc.get(ids, with_vectors=True)
    want = local.get(ids, with_vectors=True)
    assert all(np.array_equal(g["vectors"]["emb"], w["vectors"]["emb"]) for g, w in zip(got, want))
