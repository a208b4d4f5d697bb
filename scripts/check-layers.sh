#!/usr/bin/env bash
# Imports point one way: commands -> events -> host -> runtimes (behind the engine's ports) -> engine.
# Fails on an import against that direction. The host reaches the events' logic only through
# the `host::control` seam that events/ installs at load. Run by `make lint` (part of `make test`).
set -u
cd "$(dirname "$0")/.."
fail=0
check() { # <dir> <regex> <rule>
  local hits
  hits=$(grep -rnE --include='*.rs' "$2" "$1" | grep -vE '^[^:]+:[0-9]+:\s*//')
  if [ -n "$hits" ]; then
    echo "$hits"
    echo "layer check failed: $3"
    fail=1
  fi
}
check src/events 'crate::commands' 'events/ must not use commands/'
check src/host 'crate::commands' 'host/ must not use commands/'
check src/host 'crate::events' 'host/ must not use events/ (go through host::control)'
check src/host 'crate::runtime' 'host/ must not use the runtimes (shared machinery lives in the engine)'
check src/runtime 'crate::(commands|events|host)' 'a runtime sees the engine ports only, never commands/, events/ or host/'
check engine/src '(redis_module|pyo3|wasmtime|crate::gearbox)' 'the engine knows nothing of Redis, Python or wasm'
[ $fail -eq 0 ] && echo "layer check: imports point one way"
exit $fail
