"""Calls `quiver serve`'s /v1/embeddings with the official `openai` client (argv: base URL,
model, JSON list of texts) and prints what it got as one JSON object."""
import json
import sys

import openai

base, model, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = openai.OpenAI(base_url=base + "/v1", api_key="not-checked", max_retries=0)
out = {"openai_version": openai.__version__}
# The client's default asks for base64 and decodes it.
r = client.embeddings.create(model=model, input=texts)
out["default"] = [list(map(float, d.embedding)) for d in r.data]
out["indexes"] = [d.index for d in r.data]
out["usage"] = {"prompt_tokens": r.usage.prompt_tokens, "total_tokens": r.usage.total_tokens}
out["model"] = r.model
r = client.embeddings.create(model=model, input=texts, encoding_format="float")
out["float"] = [d.embedding for d in r.data]
r = client.embeddings.create(model=model, input=texts[0], dimensions=64)
out["dims64"] = r.data[0].embedding
out["models"] = [m.id for m in client.models.list().data]
errors = {}
for name, call in [
    ("unknown_model", lambda: client.embeddings.create(model="no-such-model", input="x")),
    ("token_arrays", lambda: client.embeddings.create(model=model, input=[[101, 2023, 102]])),
    ("empty_text", lambda: client.embeddings.create(model=model, input="")),
    ("too_many_dims", lambda: client.embeddings.create(model=model, input="x", dimensions=100000)),
]:
    try:
        call()
        errors[name] = None
    except openai.APIStatusError as e:
        errors[name] = {"status": e.status_code, "message": str(e)}
out["errors"] = errors
print(json.dumps(out))
