"""Child process for the crash tests: writes batches forever, acknowledging each one.

A batch's records are ``b<batch>-<i>``; after ``add`` returns, the batch number is written
and fsynced to the acknowledgement file. Some batches upsert or delete earlier records,
and the index file is saved now and then, so a kill can land anywhere.
"""

import os
import sys
import time

import numpy as np

import latentspace as ls

path, ack_path, start, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(seed)
st = ls.open_store(path)
col = st.get_or_create_collection("c", space=ls.SpaceSpec(model="m", dim=16, modality="vector"))
ack = open(ack_path, "a")
batch = start
while True:
    n = int(rng.integers(1, 60))
    x = rng.normal(size=(n, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"b{batch}-{i}" for i in range(n)]
    col.add(ids, vectors=x, documents=[f"batch {batch} item {i}" for i in range(n)],
            metadatas=[{"batch": batch, "n": n} for _ in range(n)])
    ack.write(f"{batch} {n}\n")
    ack.flush()
    os.fsync(ack.fileno())
    if batch % 5 == 0:
        col.search(vector=x[0], k=3)  # loads the index: later adds go to it
    if batch % 7 == 0:
        col.flush()  # writes the index file: a kill may land in the middle
    batch += 1
    time.sleep(0.01)
