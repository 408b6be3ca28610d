import os
import pathlib

import numpy as np
import pytest

import quiver

SHARED = pathlib.Path(__file__).resolve().parents[2].parent / "shared"
SEED = int(os.environ.get("QUIVER_TEST_SEED", "20261201"))


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
