from toolz import dicttoolz as dt


def iseven(x):
    return x % 2 == 0


def inc(x):
    return x + 1


def test_merge__later_wins():
    assert dt.merge({1: "one", 3: "x"}, {2: "two", 3: "three"}) == {1: "one", 2: "two", 3: "three"}


def test_merge__single_list():
    assert dt.merge([{1: 1}, {2: 2}]) == {1: 1, 2: 2}


def test_merge_with__sum():
    assert dt.merge_with(sum, {1: 1, 2: 2}, {1: 10, 2: 20}) == {1: 11, 2: 22}


def test_merge_with__first():
    assert dt.merge_with(lambda v: v[0], {1: 1, 2: 2}, {2: 20, 3: 30}) == {1: 1, 2: 2, 3: 30}


def test_valmap__sum():
    assert dt.valmap(sum, {"Alice": [20, 15, 30], "Bob": [10, 35]}) == {"Alice": 65, "Bob": 45}


def test_keymap__lower():
    assert dt.keymap(str.lower, {"Alice": 1, "Bob": 2}) == {"alice": 1, "bob": 2}


def test_itemmap__swap():
    assert dt.itemmap(lambda kv: (kv[1], kv[0]), {"Alice": 10, "Bob": 20}) == {10: "Alice", 20: "Bob"}


def test_valfilter__even_values():
    assert dt.valfilter(iseven, {1: 2, 2: 3, 3: 4, 4: 5}) == {1: 2, 3: 4}


def test_keyfilter__even_keys():
    assert dt.keyfilter(iseven, {1: 2, 2: 3, 3: 4, 4: 5}) == {2: 3, 4: 5}


def test_itemfilter__both():
    d = {1: 2, 2: 3, 3: 4, 4: 5}
    assert dt.itemfilter(lambda kv: iseven(kv[0]) and kv[1] < 4, d) == {2: 3}


def test_assoc__replace_and_add():
    d = {"x": 1}
    assert dt.assoc(d, "x", 2) == {"x": 2}
    assert dt.assoc(d, "y", 3) == {"x": 1, "y": 3}
    assert d == {"x": 1}


def test_dissoc__few_keys():
    d = {"x": 1, "y": 2, "z": 3}
    assert dt.dissoc(d, "y") == {"x": 1, "z": 3}
    assert d == {"x": 1, "y": 2, "z": 3}


def test_dissoc__most_keys():
    assert dt.dissoc({"x": 1, "y": 2, "z": 3}, "y", "x", "q") == {"z": 3}


def test_assoc_in__nested():
    assert dt.assoc_in({"a": {"b": 1}}, ["a", "b"], 2) == {"a": {"b": 2}}
    assert dt.assoc_in({}, ["a", "b", "c"], 1) == {"a": {"b": {"c": 1}}}


def test_update_in__existing():
    assert dt.update_in({"a": 0, "b": 5}, ["a"], inc) == {"a": 1, "b": 5}


def test_update_in__default():
    assert dt.update_in({}, ["a", "b"], inc, default=0) == {"a": {"b": 1}}


def test_get_in__found():
    assert dt.get_in(["a", "b"], {"a": {"b": 1}}) == 1
    assert dt.get_in(["a", 1], {"a": [5, 6]}) == 6


def test_get_in__missing():
    assert dt.get_in(["a", "x"], {"a": {"b": 1}}) is None
    assert dt.get_in(["a", "x"], {"a": {"b": 1}}, default="d") == "d"
