#!/usr/bin/env bash
# Build gearbox's wasm guest component (run by `make wasm-python`).
#
#   wasm-python/build-guest.sh [DEST_DIR]
#
# DEST_DIR defaults to $GEARBOX_WASM_DIR, else ${CARGO_TARGET_DIR:-<repo>/target}/wasm-python.
# Installs componentize-py (pinned by hash in requirements.txt) into DEST_DIR/componentize-venv,
# then builds DEST_DIR/gearbox-guest.wasm from wit/gearbox.wit, guest.py and python/gears*.py:
# componentize-py imports guest.py (and with it gears.py and the standard library modules it
# lists) and snapshots the initialised interpreter into the component. Its output is not
# byte-reproducible, so the inputs are pinned instead: the build is skipped while they are
# unchanged, and gearbox-guest.wasm.sha256 records the built file so that the module can refuse
# a corrupted one at load. Works offline once the wheel is in pip's cache.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
DEST="${1:-${GEARBOX_WASM_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/wasm-python}}"
OUT="$DEST/gearbox-guest.wasm"
VENV="$DEST/componentize-venv"
INPUTS=("$HERE/requirements.txt" "$HERE/wit/gearbox.wit" "$HERE/guest.py" "$REPO"/python/gears*.py)

sha_of() { sha256sum "$1" | cut -d' ' -f1; }
inputs_sha() { for f in "${INPUTS[@]}"; do echo "$(basename "$f") $(sha_of "$f")"; done | sha256sum | cut -d' ' -f1; }

mkdir -p "$DEST"
WANT="$(inputs_sha)"
if [ -f "$OUT" ] && [ -f "$OUT.sha256" ] && [ -f "$OUT.inputs" ] && [ "$(cat "$OUT.inputs")" = "$WANT" ] \
    && [ "$(sha_of "$OUT")" = "$(cat "$OUT.sha256")" ]; then
    echo "wasm-python: $OUT is up to date"
    exit 0
fi

PY="${PYTHON:-$(command -v python3 || true)}"
[ -n "$PY" ] || { echo "wasm-python: python3 (3.9+, with venv and pip) is needed to build the guest" >&2; exit 1; }
REQ_SHA="$(sha_of "$HERE/requirements.txt")"
if [ ! -x "$VENV/bin/componentize-py" ] || [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$REQ_SHA" ]; then
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: --require-hashes \
        -r "$HERE/requirements.txt"
    echo "$REQ_SHA" > "$VENV/.requirements"
fi

TMP="$(mktemp -d "$DEST/.build.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
mkdir "$TMP/app"
cp "$HERE/guest.py" "$REPO"/python/gears*.py "$TMP/app/"
echo "wasm-python: building $OUT (componentize-py, ~10 s)"
(cd "$TMP/app" && env -u VIRTUAL_ENV "$VENV/bin/componentize-py" -q -d "$HERE/wit" -w sandbox \
    componentize -p . guest -o "$TMP/gearbox-guest.wasm")
sha_of "$TMP/gearbox-guest.wasm" > "$TMP/gearbox-guest.wasm.sha256"
rm -f "$DEST"/gearbox-guest-*.cwasm  # compiled forms of the previous build
mv -f "$TMP/gearbox-guest.wasm" "$OUT"
mv -f "$TMP/gearbox-guest.wasm.sha256" "$OUT.sha256"
echo "$WANT" > "$OUT.inputs"
echo "wasm-python: built $OUT ($(stat -c %s "$OUT") bytes, sha256 $(cat "$OUT.sha256"))"
