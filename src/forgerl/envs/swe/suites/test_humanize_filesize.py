import humanize


def test_naturalsize__decimal():
    assert humanize.naturalsize(3000000) == "3.0 MB"
    assert humanize.naturalsize(1) == "1 Byte"
    assert humanize.naturalsize(10) == "10 Bytes"


def test_naturalsize__binary():
    assert humanize.naturalsize(3000, binary=True) == "2.9 KiB"


def test_naturalsize__gnu():
    assert humanize.naturalsize(3000, gnu=True) == "2.9K"
    assert humanize.naturalsize(300, gnu=True) == "300B"


def test_naturalsize__format_and_negative():
    assert humanize.naturalsize(1234567, format="%.3f") == "1.235 MB"
    assert humanize.naturalsize(-4000) == "-4.0 kB"
