"""Probes for reading (issue 20): can a policy use what its context says?

Invented-name copy, digit copy (teacher-forced and free-running, per digit), key/value lookup at
several distances (probes/reading.py), and issue 7's naming-style table (probes/naming.py);
`forgerl probe MODEL...` runs them (cli/probe.py). Items come from seeds >= PROBE_SEED_BASE, which
training data never uses (probes/items.py). Importing this package loads nothing heavy, so a
corpus builder can import the constant to stay below it.
"""

from forgerl.probes.items import PROBE_SEED_BASE

__all__ = ["PROBE_SEED_BASE"]
