"""A backend that exits before it serves anything."""

raise SystemExit("could not bind: port in use (pretend)")
