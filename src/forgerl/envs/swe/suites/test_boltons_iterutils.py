from boltons import iterutils


def test_chunked__uneven():
    assert iterutils.chunked(range(10), 3) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]


def test_chunked__fill_and_count():
    assert iterutils.chunked(range(5), 3, fill=None) == [[0, 1, 2], [3, 4, None]]
    assert iterutils.chunked(range(10), 3, count=2) == [[0, 1, 2], [3, 4, 5]]


def test_windowed__plain():
    assert iterutils.windowed(range(4), 2) == [(0, 1), (1, 2), (2, 3)]


def test_windowed__fill():
    assert iterutils.windowed(range(4), 3, fill=None) == [(0, 1, 2), (1, 2, 3), (2, 3, None), (3, None, None)]


def test_pairwise__pairs():
    assert iterutils.pairwise(range(4)) == [(0, 1), (1, 2), (2, 3)]


def test_split__none_separator():
    assert iterutils.split(["hi", "hello", None, None, "sup", None, "soap", None]) == [["hi", "hello"], ["sup"], ["soap"]]


def test_split__value_and_maxsplit():
    assert iterutils.split("abcdcba", "c") == [["a", "b"], ["d"], ["b", "a"]]
    assert iterutils.split("abcdcba", "c", maxsplit=1) == [["a", "b"], ["d", "c", "b", "a"]]


def test_bucketize__default_key():
    assert iterutils.bucketize(range(5)) == {False: [0], True: [1, 2, 3, 4]}


def test_bucketize__callable_key():
    assert iterutils.bucketize(range(10), lambda x: x % 3) == {0: [0, 3, 6, 9], 1: [1, 4, 7], 2: [2, 5, 8]}


def test_partition__key():
    assert iterutils.partition([0, 1, 2, 3], lambda x: x % 2) == ([1, 3], [0, 2])


def test_unique__plain_and_key():
    assert iterutils.unique([1, 2, 2, 3, 1]) == [1, 2, 3]
    assert iterutils.unique(["hi", "Hi", "HI", "yo"], key=str.lower) == ["hi", "yo"]


def test_one__values():
    assert iterutils.one((True, False, False)) is True
    assert iterutils.one((True, True)) is None
    assert iterutils.one([], default="d") == "d"


def test_first__values():
    assert iterutils.first([0, False, None, [], (), 42]) == 42
    assert iterutils.first([0, False]) is None
    assert iterutils.first([0, 1, 2], key=lambda x: x > 1) == 2


def test_flatten__nested():
    assert iterutils.flatten([[1, 2], [3, [4]]]) == [1, 2, 3, 4]


def test_frange__steps():
    assert iterutils.frange(5) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert iterutils.frange(1.5, 5.0, 1.5) == [1.5, 3.0, 4.5]


def test_backoff__doubling():
    assert iterutils.backoff(1, 16) == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert iterutils.backoff(1, 10) == [1.0, 2.0, 4.0, 8.0, 10.0]


def test_chunk_ranges__plain():
    assert list(iterutils.chunk_ranges(input_size=10, chunk_size=3)) == [(0, 3), (3, 6), (6, 9), (9, 10)]


def test_same__values():
    assert iterutils.same([1, 1, 1]) is True
    assert iterutils.same([1, 2]) is False
    assert iterutils.same([]) is True


def test_is_iterable__values():
    assert iterutils.is_iterable([1]) is True
    assert iterutils.is_iterable(1) is False


def test_strip__both_ends():
    assert iterutils.strip([0, 1, 0, 2, 0], 0) == [1, 0, 2]
    assert iterutils.rstrip([1, 2, 0, 0], 0) == [1, 2]
    assert iterutils.lstrip([0, 0, 1], 0) == [1]
