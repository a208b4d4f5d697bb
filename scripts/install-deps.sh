#!/usr/bin/env bash
# Installs what building and testing gearbox needs and is missing: redis-server (the server the
# module loads into), libclang (bindgen, for the Redis module API bindings), python3-venv (the
# test virtualenv). Uses the distribution's packages; runs `apt-get update` once, only if
# something is missing. Python 3.13+ itself is checked by find-python.sh.
set -eu

# rustfmt and clippy (make lint) come with rustup's default profile; add them if this toolchain lacks them.
for component in rustfmt clippy; do
  cmd=$([ "$component" = rustfmt ] && echo fmt || echo clippy)
  if ! cargo "$cmd" --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || missing+=(libclang-dev)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install ${missing[*]} with your package manager" >&2; exit 1; }
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
# Debian starts the packaged redis-server as a service; gearbox runs its own servers.
if [[ " ${missing[*]} " == *" redis-server "* ]]; then
  ($SUDO systemctl stop redis-server || $SUDO service redis-server stop) >/dev/null 2>&1 || true
fi
