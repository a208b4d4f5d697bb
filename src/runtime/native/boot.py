"""Runs first in every gearbox sub-interpreter (native mode), before gears.py.

CPython 3.13 releases before the 2025 fixes abort the whole process when two live own-GIL
interpreters imported the `_datetime` (or `_zoneinfo`) C module and the older one is destroyed
first. Sessions end in any order, so gearbox makes those imports use the pure-Python twins that
the standard library already ships (`_pydatetime`, `zoneinfo._zoneinfo`): same behaviour, no
shared C state. `_sqlite3` has no twin and crashes the same way, so it is refused with an
ImportError instead.
"""
import sys

if sys.version_info[:2] == (3, 13):
    for _name in ("_datetime", "_zoneinfo", "_sqlite3"):
        sys.modules[_name] = None
    del _name

