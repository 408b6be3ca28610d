import contextlib
import json
import os
import pathlib

import numpy as np
import pytest

import quiver

SHARED = pathlib.Path(__file__).resolve().parents[2].parent / "shared"
SEED = int(os.environ.get("QUIVER_TEST_SEED", "20261201"))

# quiver.ray's tests run Ray clusters on loopback only: with this off, Ray takes 127.0.0.1 as every
# node's address (as it does on macOS and Windows) instead of the machine's outward interface.
# Read when ray is first imported, and inherited by the Ray processes.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def pytest_report_header(config):
    return f"quiver {quiver.__version__} from {pathlib.Path(quiver.__file__).parent}; seed {SEED}"


@pytest.fixture
def rng():
    print(f"seed {SEED}")
    return np.random.default_rng(SEED)


@pytest.fixture
def db(tmp_path):
    return quiver.connect(tmp_path / "db")


def vector_schema(dim, metric="cosine"):
    return {
        "fields": {
            "emb": {"type": "dense", "dim": dim, "metric": metric},
            "body": {"type": "text", "source": ["text"]},
            "n": {"type": "integer"},
            "tag": {"type": "keyword"},
        }
    }


def brute_force(data, q, k, metric, allowed=None):
    """Exact top-k ids (row numbers) and scores of query `q` over `data` (numpy oracle)."""
    data = data.astype(np.float64)
    q = q.astype(np.float64)
    if metric == "cosine":
        data = data / np.linalg.norm(data, axis=1, keepdims=True)
        q = q / np.linalg.norm(q)
        scores = data @ q
    elif metric == "dot":
        scores = data @ q
    else:
        scores = -((data - q) ** 2).sum(axis=1)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    order = [i for i in order if np.isfinite(scores[i])]
    return list(order), scores[order]


# -- quiver.ray --------------------------------------------------------------------------------

RAY_DIM = 16
RAY_SCHEMA = {
    "fields": {
        "emb": {"type": "dense", "dim": RAY_DIM, "metric": "cosine"},
        "body": {"type": "text", "source": ["title", "text"]},
        "bucket": {"type": "integer"},
        "shard": {"type": "integer"},
    }
}


def cranfield(shards):
    """Cranfield's 1,400 documents (payload: title, text, bucket = n % 10, and the shard each
    goes to among `shards`), a seeded random vector each, 12 query texts and 12 query vectors."""
    import quiver.ray as qray

    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED)
    folder = SHARED / "data" / "cranfield"
    docs = [json.loads(line) for line in open(folder / "corpus.jsonl")]
    queries = [json.loads(line)["text"] for line in open(folder / "queries.jsonl")][:12]
    ids = [int(d["_id"]) for d in docs]
    payloads = [{"title": d["title"], "text": d["text"], "bucket": n % 10, "shard": qray.shard_of(i, shards)}
                for n, (i, d) in enumerate(zip(ids, docs))]
    vectors = rng.standard_normal((len(docs), RAY_DIM)).astype(np.float32)
    qvecs = rng.standard_normal((len(queries), RAY_DIM)).astype(np.float32)
    return ids, payloads, vectors, queries, qvecs


@contextlib.contextmanager
def ray_cluster(workers):
    """A head node and `workers` more on loopback (`ray.cluster_utils.Cluster`), one CPU and
    a small object store each; the driver connected. Yields the cluster."""
    import ray
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "object_store_memory": 80 << 20}
    c = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    for _ in range(workers):
        c.add_node(**node)
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ray.nodes()), ray.nodes()
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def local_copy(path, corpus):
    """One local collection (RAY_SCHEMA) holding every document of `corpus`: the oracle."""
    ids, payloads, vectors, _, _ = corpus
    col = quiver.connect(path).create_collection("cran", RAY_SCHEMA)
    fill(col, ids, payloads, vectors)
    return col


def fill(col, ids, payloads, vectors, batch=500):
    for s in range(0, len(ids), batch):
        col.add(ids[s:s + batch], payloads[s:s + batch], {"emb": vectors[s:s + batch]})


def same_hits(got, want, what):
    """Same scores in order; the same ids, up to the order of equal scores."""
    assert len(got) == len(want), f"{what}: {len(got)} hits, want {len(want)}"
    assert np.allclose(got.scores, want.scores, rtol=1e-6, atol=1e-6), f"{what}: {got.scores} vs {want.scores}"
    groups = lambda h: sorted((round(float(s), 5), str(i)) for i, s in zip(h.ids, h.scores))  # noqa: E731
    assert groups(got) == groups(want), f"{what}: {got.ids} vs {want.ids}"
