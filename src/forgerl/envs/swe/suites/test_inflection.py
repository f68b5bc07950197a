import inflection


def test_camelize__upper_first():
    assert inflection.camelize("device_type") == "DeviceType"
    assert inflection.camelize("a_b_c") == "ABC"


def test_camelize__lower_first():
    assert inflection.camelize("device_type", False) == "deviceType"
    assert inflection.camelize("Capital_letters", False) == "capitalLetters"


def test_dasherize__underscores():
    assert inflection.dasherize("puni_puni") == "puni-puni"
    assert inflection.dasherize("a_b_c") == "a-b-c"


def test_humanize__words():
    assert inflection.humanize("employee_salary") == "Employee salary"


def test_humanize__id_suffix():
    assert inflection.humanize("author_id") == "Author"


def test_ordinal__small():
    assert [inflection.ordinal(n) for n in (1, 2, 3, 4)] == ["st", "nd", "rd", "th"]


def test_ordinal__teens():
    assert [inflection.ordinal(n) for n in (11, 12, 13, 111)] == ["th", "th", "th", "th"]


def test_ordinal__large_and_negative():
    assert [inflection.ordinal(n) for n in (21, 102, 1003, -1021)] == ["st", "nd", "rd", "st"]


def test_ordinalize__numbers():
    assert inflection.ordinalize(1) == "1st"
    assert inflection.ordinalize(1002) == "1002nd"
    assert inflection.ordinalize(13) == "13th"


def test_parameterize__default_separator():
    assert inflection.parameterize("Donald E. Knuth") == "donald-e-knuth"


def test_parameterize__custom_separator():
    assert inflection.parameterize("Donald E. Knuth", "_") == "donald_e_knuth"


def test_parameterize__trims_separators():
    assert inflection.parameterize("  --Hello, World!--  ") == "hello-world"


def test_pluralize__regular():
    assert inflection.pluralize("post") == "posts"
    assert inflection.pluralize("search") == "searches"


def test_pluralize__irregular_and_uncountable():
    assert inflection.pluralize("person") == "people"
    assert inflection.pluralize("sheep") == "sheep"
    assert inflection.pluralize("octopus") == "octopi"


def test_singularize__regular():
    assert inflection.singularize("posts") == "post"
    assert inflection.singularize("searches") == "search"


def test_singularize__irregular_and_uncountable():
    assert inflection.singularize("people") == "person"
    assert inflection.singularize("sheep") == "sheep"
    assert inflection.singularize("matrices") == "matrix"


def test_tableize__class_names():
    assert inflection.tableize("RawScaledScorer") == "raw_scaled_scorers"
    assert inflection.tableize("fancyCategory") == "fancy_categories"


def test_titleize__sentence():
    assert inflection.titleize("man from the boondocks") == "Man From The Boondocks"


def test_titleize__camel_case():
    assert inflection.titleize("TheManWithoutAPast") == "The Man Without A Past"


def test_transliterate__accents():
    assert inflection.transliterate("älämölö") == "alamolo"


def test_underscore__camel_case():
    assert inflection.underscore("DeviceType") == "device_type"
    assert inflection.underscore("area51Controller") == "area51_controller"


def test_underscore__acronyms_and_dashes():
    assert inflection.underscore("HTMLTidy") == "html_tidy"
    assert inflection.underscore("puni-puni") == "puni_puni"
