"""The README's Python example runs as written."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch, default_enc):
    import latentspace as ls

    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ls, "default_encoder", lambda **kw: default_enc)
    v = np.random.default_rng(0).normal(size=(1, 384)).astype(np.float32)
    namespace = {"vectors": v / np.linalg.norm(v)}
    exec(compile(block, str(README), "exec"), namespace)
    hits = namespace["hits"]
    assert [h.id for h in hits] == ["b"]  # the only record from 2020 on
    assert len(namespace["own"]) == 1 and len(namespace["col"]) == 3
