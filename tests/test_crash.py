"""SIGKILL a writer at random moments; nothing acknowledged is lost, no batch is partial."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import latentspace as ls

from .conftest import slow_enabled

# 12 random kills in the default run; the slow run (LATENTSPACE_SLOW=1, as in CI) makes 30
KILLS = int(os.environ.get("LATENTSPACE_CRASH_KILLS", "30" if slow_enabled() else "12"))
WRITER = Path(__file__).with_name("crash_writer.py")


def read_acks(path: Path) -> dict[int, int]:
    acks = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                acks[int(parts[0])] = int(parts[1])
    return acks


def test_kill_loop(tmp_path):
    store_path, ack_path = tmp_path / "store", tmp_path / "acks.txt"
    rnd = random.Random(1234)
    next_batch = 0
    for kill in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(store_path), str(ack_path), str(next_batch), str(kill)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        time.sleep(rnd.uniform(0.4, 1.6))
        if proc.poll() is not None:
            raise AssertionError(f"writer died on its own: {proc.stderr.read().decode()[-2000:]}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()

        acks = read_acks(ack_path)
        st = ls.open_store(store_path)
        col = st.get_collection("c")
        recs = col.get(include_vectors=True)
        by_batch: dict[int, list] = {}
        for r in recs:
            by_batch.setdefault(r.metadata["batch"], []).append(r)
        for b, n in acks.items():
            assert len(by_batch.get(b, [])) == n, f"kill {kill}: acknowledged batch {b} lost records"
        for b, rs in by_batch.items():
            assert len(rs) == rs[0].metadata["n"], f"kill {kill}: batch {b} is partial"
        assert len(col) == len(recs)
        # the index agrees with SQLite: every sampled record finds itself, nothing extra is found
        sample = recs if len(recs) <= 50 else [recs[i] for i in np.linspace(0, len(recs) - 1, 50).astype(int)]
        for r in sample:
            assert col.search(vector=r.vector, k=1)[0].id == r.id
        hits = col.search(vector=recs[0].vector, k=min(len(recs), 10_000))
        assert len(hits) == min(len(recs), 10_000)
        assert {h.id for h in hits} <= {r.id for r in recs}
        st.close()
        next_batch = max(list(by_batch) + list(acks) + [next_batch - 1]) + 1
    assert sum(read_acks(ack_path).values()) > 0
