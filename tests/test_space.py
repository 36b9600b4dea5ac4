import pytest

import latentspace as ls


def test_fingerprint_is_stable_and_ignores_metric_and_metadata():
    a = ls.SpaceSpec(model="m", dim=8)
    b = ls.SpaceSpec(model="m", dim=8, metric="dot", metadata={"compute_precision": "bf16"})
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 16
    assert ls.SpaceSpec.from_json(a.to_json()) == a
    assert ls.SpaceSpec.from_json(b.to_json()).metadata == {"compute_precision": "bf16"}


@pytest.mark.parametrize("change", [
    {"model": "other"}, {"dim": 9}, {"normalize": False}, {"weights_sha256": "ab"}, {"revision": "v2"},
    {"pooling": "cls"}, {"query_prefix": "query: "}, {"document_prefix": "passage: "}, {"modality": "image"},
])
def test_every_geometry_field_changes_the_space(change):
    a = ls.SpaceSpec(model="m", dim=8)
    b = a.replace(**change)
    assert a.fingerprint != b.fingerprint
    with pytest.raises(ls.SpaceMismatchError) as info:
        a.require_same(b, "test")
    field = next(iter(change))
    assert f"{field}: {getattr(a, field)!r} != {getattr(b, field)!r}" in str(info.value)
    assert set(info.value.differences) == {field}


def test_mismatch_names_each_field():
    a = ls.SpaceSpec(model="A", dim=256, normalize=True)
    b = ls.SpaceSpec(model="B", dim=256, normalize=False, truncate_dim=256)
    with pytest.raises(ls.SpaceMismatchError) as info:
        a.require_same(b, "adding vectors")
    msg = str(info.value)
    assert "model: 'A' != 'B'" in msg and "normalize: True != False" in msg and "truncate_dim: None != 256" in msg


@pytest.mark.parametrize("bad", [
    {"model": ""}, {"dim": 0}, {"dim": "8"}, {"normalize": "yes"}, {"metric": "hamming"}, {"modality": "sound"},
    {"truncate_dim": 4}, {"dtype": "float16"},
])
def test_invalid_specs_are_refused(bad):
    kwargs = {"model": "m", "dim": 8, **bad}
    with pytest.raises(ls.InvalidInputError):
        ls.SpaceSpec(**kwargs)


def test_unknown_field_in_json():
    with pytest.raises(ls.InvalidInputError, match="Unknown SpaceSpec field"):
        ls.SpaceSpec.from_dict({"model": "m", "dim": 3, "colour": "red"})
