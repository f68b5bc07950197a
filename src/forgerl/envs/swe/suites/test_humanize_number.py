import humanize


def test_ordinal__small():
    assert [humanize.ordinal(n) for n in (1, 2, 3, 4)] == ["1st", "2nd", "3rd", "4th"]


def test_ordinal__teens_and_hundreds():
    assert [humanize.ordinal(n) for n in (11, 12, 13, 101, 111, 122)] == ["11th", "12th", "13th", "101st", "111th", "122nd"]


def test_ordinal__not_a_number():
    assert humanize.ordinal("something") == "something"


def test_intcomma__integers():
    assert humanize.intcomma(100) == "100"
    assert humanize.intcomma(1000) == "1,000"
    assert humanize.intcomma(123456789) == "123,456,789"


def test_intcomma__negative_string_and_digits():
    assert humanize.intcomma(-1000) == "-1,000"
    assert humanize.intcomma("10311") == "10,311"
    assert humanize.intcomma(1234.5454545, 2) == "1,234.55"


def test_intword__small():
    assert humanize.intword(100) == "100"


def test_intword__large():
    assert humanize.intword(1000000) == "1.0 million"
    assert humanize.intword(1200000000) == "1.2 billion"
    assert humanize.intword(12400) == "12.4 thousand"


def test_apnumber__words():
    assert [humanize.apnumber(n) for n in (0, 5, 9)] == ["zero", "five", "nine"]


def test_apnumber__large():
    assert humanize.apnumber(10) == "10"


def test_fractional__proper():
    assert humanize.fractional(0.3) == "3/10"
    assert humanize.fractional(0.5) == "1/2"


def test_fractional__mixed_and_whole():
    assert humanize.fractional(1.3) == "1 3/10"
    assert humanize.fractional(1) == "1"


def test_scientific__positive():
    assert humanize.scientific(500) == "5.00 x 10²"
    assert humanize.scientific(1000, precision=1) == "1.0 x 10³"


def test_scientific__negative():
    assert humanize.scientific(0.3) == "3.00 x 10⁻¹"
    assert humanize.scientific(-1000) == "-1.00 x 10³"


def test_clamp__floor():
    assert humanize.clamp(0.0001, floor=0.01) == "<0.01"
    assert humanize.clamp(0.5, floor=0.01) == "0.5"


def test_clamp__ceil():
    assert humanize.clamp(0.99, format="{:.0%}", ceil=0.99) == "99%"
    assert humanize.clamp(0.999, format="{:.0%}", ceil=0.99) == ">99%"


def test_metric__prefixes():
    assert humanize.metric(1500, "V") == "1.50 kV"
    assert humanize.metric(2e8, "W") == "200 MW"
    assert humanize.metric(220e-6, "F") == "220 μF"
