"""Build the store the explorer's screenshots show: the test corpus's 8,920 standard-library
docstring paragraphs (tests/corpus.py, sha256-checked) in MiniLM's space, the same records
in MiniLM truncated to 128 dimensions (a second space sharing the ids), and a digits VAE.

    .venv/bin/python docs/explorer/build_demo_store.py /tmp/explorer-store
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import latentspace as ls  # noqa: E402
from latentspace.data.vectors import embed_cached  # noqa: E402
from tests.corpus import rows  # noqa: E402


def main(folder: str) -> None:
    out = Path(folder)
    data = list(rows())
    texts = [r["text"] for r in data]
    vecs = embed_cached(texts, progress=True)
    ids = [f"p{i}" for i in range(len(data))]
    metas = [{"package": r["package"], "module": r.get("module", r["package"])} for r in data]
    st = ls.open_store(out / "store")
    enc = ls.default_encoder()
    col = st.get_or_create_collection("stdlib", encoder=enc)
    if len(col) == 0:
        for s in range(0, len(ids), 1000):
            col.add(ids[s:s + 1000], documents=texts[s:s + 1000], metadatas=metas[s:s + 1000],
                    vectors=vecs[s:s + 1000], space=enc.spec)
    spec128 = enc.spec.replace(truncate_dim=128, dim=128)
    short = st.get_or_create_collection("stdlib-128d", space=spec128)
    if len(short) == 0:
        v = vecs[:, :128] / np.linalg.norm(vecs[:, :128], axis=1, keepdims=True)
        for s in range(0, len(ids), 1000):
            short.add(ids[s:s + 1000], documents=texts[s:s + 1000], metadatas=metas[s:s + 1000], vectors=v[s:s + 1000])
    st.close()
    from sklearn.datasets import load_digits

    from latentspace.latent import LatentConfig, LatentModel, save_model, train

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    np.savez(out / "digits.npz", x=x, y=d.target.astype(np.int64))
    if not (out / "digits-vae" / "config.json").exists():
        model = LatentModel(LatentConfig(name="digits-vae", input_shape=(64,), latent_dim=8), seed=0)
        train(model, x, epochs=150, seed=0)
        save_model(model, out / "digits-vae")
    print(f"built {out}: collections stdlib, stdlib-128d; latent model digits-vae with digits.npz")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/explorer-store")
