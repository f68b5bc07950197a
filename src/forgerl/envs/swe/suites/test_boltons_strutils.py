from boltons import strutils


def test_camel2under__words():
    assert strutils.camel2under("BasicParseTest") == "basic_parse_test"


def test_under2camel__words():
    assert strutils.under2camel("complex_tokenizer") == "ComplexTokenizer"


def test_slugify__punctuation():
    assert strutils.slugify("First post! Hi!!!!~1    ") == "first_post_hi_1"
    assert strutils.slugify("Hello World", delim="-") == "hello-world"


def test_split_punct_ws__words():
    assert strutils.split_punct_ws("First post! Hi!!!!~1    ") == ["First", "post", "Hi", "1"]


def test_unit_len__counts():
    assert strutils.unit_len(range(10), "number") == "10 numbers"
    assert strutils.unit_len("aeiou", "vowel") == "5 vowels"


def test_unit_len__empty_and_one():
    assert strutils.unit_len([], "worry") == "No worries"
    assert strutils.unit_len(["x"], "cat") == "1 cat"


def test_ordinalize__numbers():
    assert [strutils.ordinalize(n) for n in (1, 2, 3, 4)] == ["1st", "2nd", "3rd", "4th"]
    assert [strutils.ordinalize(n) for n in (11, 12, 13, 22)] == ["11th", "12th", "13th", "22nd"]


def test_ordinalize__ext_only():
    assert strutils.ordinalize(3, ext_only=True) == "rd"


def test_cardinalize__counts():
    assert strutils.cardinalize("goose", 1) == "goose"
    assert strutils.cardinalize("goose", 3) == "geese"


def test_pluralize__words():
    assert strutils.pluralize("worry") == "worries"
    assert strutils.pluralize("Wish") == "Wishes"


def test_singularize__words():
    assert strutils.singularize("chances") == "chance"
    assert strutils.singularize("Activities") == "Activity"


def test_strip_ansi__codes():
    assert strutils.strip_ansi("\x1b[0m\x1b[1;36mart\x1b[46;34m") == "art"


def test_bytes2human__sizes():
    assert strutils.bytes2human(128991) == "126K"
    assert strutils.bytes2human(100001221) == "95M"
    assert strutils.bytes2human(0, 2) == "0.00B"


def test_indent__skips_blank_lines():
    assert strutils.indent("a\nb", "  ") == "  a\n  b"
    assert strutils.indent("a\n\nb", "> ") == "> a\n\n> b"


def test_is_uuid__versions():
    assert strutils.is_uuid("e682ccca-5a4c-4ef2-9711-73f9ad1e15ea") is True
    assert strutils.is_uuid("0221f0d9-d4b9-11e5-a478-10ddb1c2feb9") is False
    assert strutils.is_uuid("0221f0d9-d4b9-11e5-a478-10ddb1c2feb9", version=1) is True


def test_is_uuid__garbage():
    assert strutils.is_uuid("not-a-uuid") is False


def test_parse_int_list__ranges():
    assert strutils.parse_int_list("1,3,5-8,10-11,15") == [1, 3, 5, 6, 7, 8, 10, 11, 15]


def test_format_int_list__ranges():
    assert strutils.format_int_list([1, 3, 5, 6, 7, 8, 10, 11, 15]) == "1,3,5-8,10-11,15"


def test_complement_int_list__gaps():
    assert strutils.complement_int_list("1,3,5-8,10-11,15") == "0,2,4,9,12-14"


def test_int_ranges_from_int_list__ranges():
    assert strutils.int_ranges_from_int_list("1,3,5-8,10-11,15") == ((1, 1), (3, 3), (5, 8), (10, 11), (15, 15))
