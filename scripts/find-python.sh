#!/usr/bin/env bash
# Prints the path of a Python 3.13+ interpreter built with a shared libpython, found the way
# pyo3 finds one (PYO3_PYTHON, then python3.x / python3 on PATH), then through pyenv if it is
# installed. Exits 1 with instructions when there is none.
set -u

usable() {
  "$1" - <<'PY' >/dev/null 2>&1
import sys, sysconfig
assert sys.version_info >= (3, 13)
assert sysconfig.get_config_var("Py_ENABLE_SHARED") == 1
PY
}

resolve() {
  # A pyenv shim answers for the active version only; ask it for the real path when it can.
  "$1" -c 'import sys; print(sys.executable)' 2>/dev/null
}

if [ -n "${PYO3_PYTHON:-}" ]; then
  if usable "$PYO3_PYTHON"; then echo "$PYO3_PYTHON"; exit 0; fi
  echo "PYO3_PYTHON=$PYO3_PYTHON is not a Python 3.13+ with a shared libpython" >&2
  exit 1
fi

for candidate in python3.15 python3.14 python3.13 python3; do
  if command -v "$candidate" >/dev/null 2>&1 && usable "$candidate"; then
    resolve "$candidate"; exit 0
  fi
done

if command -v pyenv >/dev/null 2>&1; then
  for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[3-9]|[2-9][0-9])(\.[0-9]+)?$' | sort -t. -k1,1n -k2,2n -k3,3n -r); do
    prefix=$(pyenv prefix "$version" 2>/dev/null) || continue
    if usable "$prefix/bin/python3"; then echo "$prefix/bin/python3"; exit 0; fi
  done
fi

cat >&2 <<'MSG'
gearbox needs Python 3.13 or newer, built with a shared libpython (own-GIL sub-interpreters are
not stable before 3.13). None was found (tried PYO3_PYTHON, python3.13+/python3 on PATH, pyenv).
  * Debian 13 / Ubuntu 24.10 or newer:  apt-get install python3.13-dev
  * elsewhere, with pyenv:                PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install 3.13
Then run make again (or point PYO3_PYTHON at the interpreter).
MSG
exit 1
