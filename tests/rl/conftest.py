"""The rl tests share naive reference implementations in rl_reference.py. The suite runs with
--import-mode=importlib, which does not put test folders on sys.path, so this conftest does."""

import os
import sys

_HERE = os.path.dirname(__file__)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
