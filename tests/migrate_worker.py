"""Child process for migration tests: 'migrate' runs a migration; 'read' queries in a loop."""

import json
import sys
import time

import latentspace as ls

mode, store_path, model_path, out_path = sys.argv[1:5]
st = ls.open_store(store_path)
if mode == "migrate":
    col = st.get_collection("docs")
    col.migrate(ls.TransformersEncoder(model_path, pooling="mean"), batch_size=8, queries=3)
    print("done", flush=True)
else:  # read: resolve the name and search, recording which space answered, until the deadline
    # or 50 reads after the space changed
    deadline = time.time() + float(sys.argv[5])
    encoders = {}  # one loaded encoder per space, reused across queries
    first, after = None, 0
    with open(out_path, "w") as out:
        while time.time() < deadline and after < 50:
            enc = encoders.get(st.collection_info("docs").spec.fingerprint)
            try:
                col = st.get_collection("docs", encoder=enc) if enc else st.get_collection("docs")
            except ls.SpaceMismatchError:  # switched between the two calls: ask again
                continue
            hits = col.search("document about cats", k=5, mode="exact")
            encoders[col.spec.fingerprint] = col.encoder
            out.write(json.dumps({"fp": col.spec.fingerprint, "ids": [h.id for h in hits]}) + "\n")
            out.flush()
            first = first or col.spec.fingerprint
            after += col.spec.fingerprint != first
st.close()
