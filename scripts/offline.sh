#!/usr/bin/env bash
# Run a command with no network: in a fresh network namespace that holds only loopback (the lectures' kernels talk to
# Sphinx over 127.0.0.1). Needs root or unprivileged user namespaces. CI builds the site through it:
# `make docs OFFLINE=scripts/offline.sh`.
set -euo pipefail
if [ $# -eq 0 ]; then
    echo "offline.sh: expected a command to run, e.g. scripts/offline.sh python -m sphinx ..." >&2
    exit 2
fi
as_root=()
[ "$(id -u)" = 0 ] || as_root=(--map-root-user)
exec unshare --net "${as_root[@]}" sh -c 'ip link set lo up && exec "$@"' sh "$@"
