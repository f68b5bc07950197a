from operator import add

from toolz import itertoolz as it


def iseven(x):
    return x % 2 == 0


def test_remove__odd_kept():
    assert list(it.remove(iseven, [1, 2, 3, 4, 5])) == [1, 3, 5]


def test_accumulate__sum():
    assert list(it.accumulate(add, [1, 2, 3, 4, 5])) == [1, 3, 6, 10, 15]


def test_accumulate__initial():
    assert list(it.accumulate(add, [1, 2, 3], -1)) == [-1, 0, 2, 5]


def test_groupby__by_length():
    names = ["Alice", "Bob", "Charlie", "Dan", "Edith", "Frank"]
    assert it.groupby(len, names) == {3: ["Bob", "Dan"], 5: ["Alice", "Edith", "Frank"], 7: ["Charlie"]}


def test_groupby__key_name():
    rows = [{"a": 1, "b": 0}, {"a": 2, "b": 1}, {"a": 1, "b": 2}]
    assert it.groupby("a", rows) == {1: [rows[0], rows[2]], 2: [rows[1]]}


def test_interleave__uneven():
    assert list(it.interleave([[1, 2], [3, 4, 5], [6]])) == [1, 3, 6, 2, 4, 5]


def test_unique__keeps_first():
    assert list(it.unique([1, 2, 3, 1, 2, 4])) == [1, 2, 3, 4]


def test_unique__key():
    assert list(it.unique(["cat", "mouse", "dog", "hen"], key=len)) == ["cat", "mouse"]


def test_isiterable__values():
    assert [it.isiterable(x) for x in ([1], "abc", 5, None)] == [True, True, False, False]


def test_isdistinct__sequences():
    assert it.isdistinct([1, 2, 3]) is True
    assert it.isdistinct([1, 2, 1]) is False


def test_isdistinct__iterators():
    assert it.isdistinct(iter([1, 2, 3])) is True
    assert it.isdistinct(iter("Hello")) is False


def test_take__prefix():
    assert list(it.take(2, [10, 20, 30])) == [10, 20]


def test_tail__suffix():
    assert list(it.tail(2, [10, 20, 30, 40])) == [30, 40]
    assert list(it.tail(2, iter([10, 20, 30, 40]))) == [30, 40]


def test_drop__prefix():
    assert list(it.drop(2, [10, 20, 30, 40])) == [30, 40]


def test_take_nth__every_second():
    assert list(it.take_nth(2, [10, 20, 30, 40, 50])) == [10, 30, 50]


def test_nth__sequence_and_iterator():
    assert it.nth(1, "ABC") == "B"
    assert it.nth(2, iter("ABC")) == "C"


def test_last__sequence_and_iterator():
    assert it.last([1, 2, 3]) == 3
    assert it.last(iter([1, 2, 3])) == 3


def test_get__single_and_many():
    assert it.get(1, "ABC") == "B"
    assert it.get([0, 2], "ABC") == ("A", "C")


def test_get__default():
    assert it.get(5, "ABC", default="x") == "x"
    assert it.get([0, 5], "AB", default=None) == ("A", None)


def test_interpose__separator():
    assert list(it.interpose("a", [1, 2, 3])) == [1, "a", 2, "a", 3]


def test_frequencies__counts():
    assert it.frequencies(["cat", "cat", "ox", "pig", "pig", "cat"]) == {"cat": 3, "ox": 1, "pig": 2}


def test_reduceby__sum_by_parity():
    assert it.reduceby(iseven, add, [1, 2, 3, 4, 5]) == {True: 6, False: 9}


def test_reduceby__init():
    assert it.reduceby(iseven, add, [1, 2, 3, 4, 5], 100) == {True: 106, False: 109}


def test_sliding_window__pairs():
    assert list(it.sliding_window(2, [1, 2, 3, 4])) == [(1, 2), (2, 3), (3, 4)]
    assert list(it.sliding_window(3, [1, 2])) == []


def test_partition__drops_tail():
    assert list(it.partition(2, [1, 2, 3, 4, 5])) == [(1, 2), (3, 4)]


def test_partition__pads_tail():
    assert list(it.partition(2, [1, 2, 3, 4, 5], pad=None)) == [(1, 2), (3, 4), (5, None)]


def test_partition_all__keeps_tail():
    assert list(it.partition_all(2, [1, 2, 3, 4, 5])) == [(1, 2), (3, 4), (5,)]
    assert list(it.partition_all(3, iter(range(6)))) == [(0, 1, 2), (3, 4, 5)]


def test_count__sequence_and_iterator():
    assert it.count([1, 2, 3]) == 3
    assert it.count(iter([1, 2, 3, 4])) == 4


def test_pluck__single_and_many():
    assert list(it.pluck("name", [{"name": "a"}, {"name": "b"}])) == ["a", "b"]
    assert list(it.pluck([0, 1], [[1, 2, 3], [4, 5, 7]])) == [(1, 2), (4, 5)]


def test_diff__pairs():
    assert list(it.diff([1, 2, 3], [1, 2, 10, 100])) == [(3, 10)]


def test_diff__default():
    assert list(it.diff([1, 2, 3], [1, 2, 10, 100], default=None)) == [(3, 10), (None, 100)]


def test_topk__numbers():
    assert it.topk(2, [1, 100, 10, 1000]) == (1000, 100)


def test_topk__key():
    assert it.topk(2, ["Alice", "Bob", "Charlie", "Dan"], key=len) == ("Charlie", "Alice")


def test_peek__first_and_rest():
    first, seq = it.peek([1, 2, 3])
    assert first == 1
    assert list(seq) == [1, 2, 3]


def test_concat__lists():
    assert list(it.concat([[], [1], [2, 3]])) == [1, 2, 3]


def test_cons__prepends():
    assert list(it.cons(1, [2, 3])) == [1, 2, 3]
