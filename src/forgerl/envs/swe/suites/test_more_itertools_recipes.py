import more_itertools as mi


def test_take__prefix():
    assert mi.take(3, range(10)) == [0, 1, 2]
    assert mi.take(3, range(2)) == [0, 1]


def test_tail__suffix():
    assert list(mi.tail(3, "ABCDEFG")) == ["E", "F", "G"]
    assert list(mi.tail(3, iter("ABCDEFG"))) == ["E", "F", "G"]


def test_nth__index_and_default():
    assert mi.nth(range(10), 3) == 3
    assert mi.nth(range(10), 20, "zebra") == "zebra"


def test_all_equal__values():
    assert mi.all_equal("aaaa") is True
    assert mi.all_equal("aaab") is False
    assert mi.all_equal([]) is True


def test_quantify__count_true():
    assert mi.quantify([True, False, True]) == 2
    assert mi.quantify(range(10), lambda x: x > 6) == 3


def test_ncycles__repeat():
    assert list(mi.ncycles(["a", "b"], 3)) == ["a", "b", "a", "b", "a", "b"]


def test_dotproduct__vectors():
    assert mi.dotproduct([10, 10], [20, 20]) == 400


def test_flatten__one_level():
    assert list(mi.flatten([[0, 1], [2, 3]])) == [0, 1, 2, 3]


def test_grouper__fill():
    assert list(mi.grouper("ABCDEFG", 3, fillvalue="x")) == [("A", "B", "C"), ("D", "E", "F"), ("G", "x", "x")]


def test_grouper__ignore():
    assert list(mi.grouper("ABCDEFG", 3, incomplete="ignore")) == [("A", "B", "C"), ("D", "E", "F")]


def test_partition__odd_even():
    evens, odds = mi.partition(lambda x: x % 2, range(10))
    assert list(evens) == [0, 2, 4, 6, 8]
    assert list(odds) == [1, 3, 5, 7, 9]


def test_powerset__three():
    assert list(mi.powerset([1, 2, 3])) == [(), (1,), (2,), (3,), (1, 2), (1, 3), (2, 3), (1, 2, 3)]


def test_unique_everseen__plain_and_key():
    assert list(mi.unique_everseen("AAAABBBCCDAABBB")) == ["A", "B", "C", "D"]
    assert list(mi.unique_everseen("ABBcCAD", key=str.lower)) == ["A", "B", "c", "D"]


def test_unique_justseen__runs():
    assert list(mi.unique_justseen("AAAABBBCCDAABBB")) == ["A", "B", "C", "D", "A", "B"]


def test_first_true__values():
    assert mi.first_true(range(10)) == 1
    assert mi.first_true(range(10), pred=lambda x: x > 5) == 6
    assert mi.first_true(range(10), default="missing", pred=lambda x: x > 9) == "missing"


def test_triplewise__letters():
    assert list(mi.triplewise("ABCDE")) == [("A", "B", "C"), ("B", "C", "D"), ("C", "D", "E")]


def test_sliding_window__four():
    assert list(mi.sliding_window(range(6), 4)) == [(0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5)]


def test_before_and_after__upper_prefix():
    before, after = mi.before_and_after(str.isupper, "ABCdEfGhI")
    assert "".join(before) == "ABC"
    assert "".join(after) == "dEfGhI"


def test_iter_index__positions():
    assert list(mi.iter_index("AABCADEAF", "A")) == [0, 1, 4, 7]


def test_sieve__primes():
    assert list(mi.sieve(30)) == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]


def test_polynomial_eval__value():
    assert mi.polynomial_eval([1, -4, -17, 60], 2.5) == 8.125


def test_roundrobin__uneven():
    assert list(mi.roundrobin("ABC", "D", "EF")) == ["A", "D", "E", "B", "F", "C"]


def test_prepend__value():
    assert list(mi.prepend(1, [2, 3])) == [1, 2, 3]


def test_factor__composite():
    assert list(mi.factor(360)) == [2, 2, 2, 3, 3, 5]
    assert list(mi.factor(97)) == [97]


def test_totient__values():
    assert mi.totient(12) == 4
    assert mi.totient(13) == 12
