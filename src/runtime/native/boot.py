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


class _LogStream:
    """sys.stdout / sys.stderr of a script: whole lines to the Redis log, through the session's
    log budget (LogLinesPerSecond) like log(); never the server's own stdout."""

    def __init__(self, level):
        self._level, self._buf = level, ""

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        self._buf += s
        while "\n" in self._buf or len(self._buf) > 65536:
            line, sep, rest = self._buf.partition("\n")
            if not sep:
                line, rest = self._buf[:65536], self._buf[65536:]
            self._buf = rest
            import _gearbox
            _gearbox.log(self._level, line)
        return len(s)

    def flush(self):
        pass

    def isatty(self):
        return False


sys.stdout, sys.stderr = _LogStream("notice"), _LogStream("warning")
