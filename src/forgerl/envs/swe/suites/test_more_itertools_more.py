import pytest

import more_itertools as mi


def test_chunked__uneven():
    assert list(mi.chunked([1, 2, 3, 4, 5, 6, 7], 3)) == [[1, 2, 3], [4, 5, 6], [7]]


def test_chunked__strict():
    assert list(mi.chunked(range(6), 3, strict=True)) == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError):
        list(mi.chunked(range(5), 3, strict=True))


def test_first__values():
    assert mi.first([0, 1, 2]) == 0
    assert mi.first([], "x") == "x"


def test_last__values():
    assert mi.last([0, 1, 2]) == 2
    assert mi.last(iter([1, 2])) == 2
    assert mi.last([], "x") == "x"


def test_nth_or_last__values():
    assert mi.nth_or_last([0, 1, 2, 3], 2) == 2
    assert mi.nth_or_last([0, 1], 5) == 1
    assert mi.nth_or_last([], 0, "x") == "x"


def test_one__single():
    assert mi.one(["a"]) == "a"


def test_one__errors():
    with pytest.raises(ValueError):
        mi.one([])
    with pytest.raises(ValueError):
        mi.one([1, 2])


def test_windowed__basic():
    assert list(mi.windowed([1, 2, 3, 4, 5], 3)) == [(1, 2, 3), (2, 3, 4), (3, 4, 5)]


def test_windowed__short_and_step():
    assert list(mi.windowed([1, 2, 3], 4)) == [(1, 2, 3, None)]
    assert list(mi.windowed([1, 2, 3, 4, 5, 6], 3, step=2)) == [(1, 2, 3), (3, 4, 5), (5, 6, None)]


def test_split_at__basic():
    assert list(mi.split_at("abcdcba", lambda x: x == "b")) == [["a"], ["c", "d", "c"], ["a"]]


def test_split_at__maxsplit_and_keep():
    assert list(mi.split_at("abcdcba", lambda x: x == "b", maxsplit=1)) == [["a"], ["c", "d", "c", "b", "a"]]
    assert list(mi.split_at("abcb", lambda x: x == "b", keep_separator=True)) == [["a"], ["b"], ["c"], ["b"], []]


def test_split_before__upper():
    assert list(mi.split_before("OneTwo", str.isupper)) == [["O", "n", "e"], ["T", "w", "o"]]


def test_split_after__digits():
    assert list(mi.split_after("one1two2", str.isdigit)) == [["o", "n", "e", "1"], ["t", "w", "o", "2"]]


def test_padded__fill():
    assert list(mi.padded([1, 2, 3], "?", 5)) == [1, 2, 3, "?", "?"]


def test_padded__next_multiple():
    assert list(mi.padded([1, 2, 3, 4], n=3, next_multiple=True)) == [1, 2, 3, 4, None, None]


def test_distribute__three():
    assert [list(c) for c in mi.distribute(3, [1, 2, 3, 4, 5, 6, 7])] == [[1, 4, 7], [2, 5], [3, 6]]


def test_stagger__default():
    assert list(mi.stagger([0, 1, 2, 3])) == [(None, 0, 1), (0, 1, 2), (1, 2, 3)]


def test_collapse__all_levels():
    assert list(mi.collapse([[1], [2, [3]], 4, "ab"])) == [1, 2, 3, 4, "ab"]


def test_collapse__one_level():
    assert list(mi.collapse([[1], [2, [3]]], levels=1)) == [1, 2, [3]]


def test_adjacent__distance():
    got = list(mi.adjacent(lambda x: x == 3, range(6)))
    assert got == [(False, 0), (False, 1), (True, 2), (True, 3), (True, 4), (False, 5)]
    assert [flag for flag, _ in mi.adjacent(lambda x: x == 0, range(4), distance=2)] == [True, True, True, False]


def test_locate__truthy():
    assert list(mi.locate([0, 1, 1, 0, 1, 0, 0])) == [1, 2, 4]


def test_locate__predicate():
    assert list(mi.locate(["a", "b", "c", "b"], lambda x: x == "b")) == [1, 3]


def test_rlocate__truthy():
    assert list(mi.rlocate([0, 1, 1, 0, 1, 0, 0])) == [4, 2, 1]


def test_sliced__tuples():
    assert list(mi.sliced((1, 2, 3, 4, 5, 6, 7, 8), 3)) == [(1, 2, 3), (4, 5, 6), (7, 8)]


def test_always_iterable__values():
    assert list(mi.always_iterable([1, 2])) == [1, 2]
    assert list(mi.always_iterable(1)) == [1]
    assert list(mi.always_iterable(None)) == []
    assert list(mi.always_iterable("foo")) == ["foo"]


def test_split_into__sizes():
    assert list(mi.split_into([1, 2, 3, 4, 5, 6], [1, 2, 3])) == [[1], [2, 3], [4, 5, 6]]
    assert list(mi.split_into([1, 2, 3, 4, 5, 6], [2, 3])) == [[1, 2], [3, 4, 5]]
    assert list(mi.split_into([1, 2, 3, 4], [1, None])) == [[1], [2, 3, 4]]


def test_interleave_longest__uneven():
    assert list(mi.interleave_longest([1, 2, 3], [4, 5], [6, 7, 8])) == [1, 4, 6, 2, 5, 7, 3, 8]


def test_intersperse__single():
    assert list(mi.intersperse("!", [1, 2, 3])) == [1, "!", 2, "!", 3]


def test_intersperse__every_n():
    assert list(mi.intersperse(None, [1, 2, 3, 4, 5], n=2)) == [1, 2, None, 3, 4, None, 5]


def test_mark_ends__three():
    assert list(mi.mark_ends("ABC")) == [(True, False, "A"), (False, False, "B"), (False, True, "C")]


def test_substrings__all():
    assert list(mi.substrings("more")) == [
        ("m",), ("o",), ("r",), ("e",), ("m", "o"), ("o", "r"), ("r", "e"),
        ("m", "o", "r"), ("o", "r", "e"), ("m", "o", "r", "e"),
    ]


def test_difference__inverse_of_accumulate():
    assert list(mi.difference([0, 1, 3, 6, 10])) == [0, 1, 2, 3, 4]


def test_ilen__count():
    assert mi.ilen(x for x in range(100) if x % 3 == 0) == 34


def test_exactly_n__counts():
    assert mi.exactly_n([True, True, False], 2) is True
    assert mi.exactly_n([True, True, False], 1) is False


def test_is_sorted__flags():
    assert mi.is_sorted([1, 2, 2]) is True
    assert mi.is_sorted([1, 2, 2], strict=True) is False
    assert mi.is_sorted([3, 2, 1], reverse=True) is True
    assert mi.is_sorted([1, 3, 2]) is False
