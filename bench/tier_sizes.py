"""RAM and disk bytes per document of a 384-d dense field in three memory tiers, as `collection
info` reports them (docs/scale-out.md quotes them). 20,000 seeded random vectors (HNSW m = 16,
ef_construction = 200, cosine) and a 60-word text each in a BM25 field, loaded with bulk_load.

    python bench/tier_sizes.py       # any Python with the quiver package (e.g. bench-ray-venv)
"""

import json, tempfile, numpy as np, quiver
rng = np.random.default_rng(7)
n, d = 20000, 384
X = rng.standard_normal((n, d)).astype(np.float32)
texts = [{"text": " ".join(f"w{w}" for w in rng.integers(0, 5000, 60))} for _ in range(n)]
tiers = {
  "f32 in RAM + HNSW": {"type": "dense", "dim": d, "metric": "cosine", "vectors": "ram"},
  "int8 codes in RAM + HNSW, f32 on disk": {"type": "dense", "dim": d, "metric": "cosine", "vectors": "disk", "codecs": [{"type": "int8"}]},
  "binary codes in RAM + HNSW, f32 on disk": {"type": "dense", "dim": d, "metric": "cosine", "vectors": "disk", "codecs": [{"type": "binary"}]},
}
out = {}
for name, f in tiers.items():
    col = quiver.connect(tempfile.mkdtemp()).create_collection("t", {"fields": {"emb": f, "body": {"type": "text", "source": ["text"]}}})
    col.bulk_load(list(range(n)), texts, {"emb": X})
    info = col.info()
    dn = info["tiers"][0]
    out[name] = {k: dn[k] for k in ("ram_bytes_per_vector", "disk_bytes_per_vector", "ram_codes", "ram_graph", "ram_vectors", "disk_vectors")}
    out[name]["disk_bytes_per_document"] = info["disk"]["bytes_per_document"]
    print(name, json.dumps(out[name]), flush=True)
