import numpy as np

import latentspace as ls


def test_roundtrip(tmp_path):
    store = ls.open_store(tmp_path / "s")
    col = store.create_collection("v", space=ls.SpaceSpec(model="m", dim=4, normalize=False))
    col.add(["a", "b"], vectors=np.eye(4, dtype="f4")[:2])
    assert [h.id for h in col.search(vector=np.eye(4)[1], k=1)] == ["b"]
