from mutations.hashing import canonical_json, state_hash


def test_hash_has_the_published_shape() -> None:
    value = state_hash({"meta": [{"daily_budget_micros": 1}]})
    assert value.startswith("h_") and len(value) == 14
    int(value[2:], 16)


def test_hash_ignores_key_order_and_volatile_fields() -> None:
    a = {"meta": [{"a": 1, "b": 2, "updated_at": "2026-01-01T00:00:00Z"}]}
    b = {"meta": [{"b": 2, "a": 1, "updated_at": "2026-11-23T10:00:00Z"}]}
    assert state_hash(a) == state_hash(b)
    assert canonical_json(a) == '{"meta":[{"a":1,"b":2}]}'


def test_hash_changes_with_the_state() -> None:
    assert state_hash({"meta": [{"budget": 1}]}) != state_hash({"meta": [{"budget": 2}]})
