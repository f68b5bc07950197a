"""Hand-written pytest suites for the package functions the swe-bugfix family mutates.

pip-installed packages do not ship their tests, so each suite here characterises the functions it
targets with a few example-based asserts. Convention the pipeline relies on: a test named
`test_<function>__<case>` exercises `<function>` (`Class.method` is written `Class_method`). The
files are data: the pipeline and the verifier copy them into sandboxes; nothing imports them here.
"""
