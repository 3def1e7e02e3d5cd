#!/usr/bin/env bash
# Runs the README as written: its ```sh blocks, top to bottom, as one bash session from the
# repository root, stopping at the first command that fails. A block right after a
# `<!-- readme-test: skip (why) -->` line is not run (the test suite itself, benchmarks).
# `cargo install` installs into a temporary root put first on PATH, so nothing outside this
# run is touched; background jobs the README starts are stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/sesame-readme.XXXXXX)
script="$work/readme.sh"
{
  echo 'set -euo pipefail'
  echo 'trap '"'"'kill $(jobs -p) 2>/dev/null || true'"'"' EXIT'
  echo 'set -x'
  awk '
    /^<!-- readme-test: skip/ { skip = 1; next }
    /^```sh[[:space:]]*$/ { if (!skip) run = 1; skip = 0; next }
    /^```/ { run = 0; skip = 0; next }
    run { print }
  ' README.md
} > "$script"
blocks=$(grep -c '^```sh' README.md)
echo "== README: running $(grep -vc '^\(set \|trap \)' "$script") lines from $blocks sh blocks ($script)"
export CARGO_INSTALL_ROOT="$work/install"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export PATH="$CARGO_INSTALL_ROOT/bin:$PATH"
# A clean environment for what the README sets itself.
unset SESAME_CHIP_KEY SESAME_CLOUD_ADMIN_TOKEN SESAME_CLOUD_URL SESAME_CACERT
timeout 1200 bash "$script"
rm -rf "$work"
echo "== README ran as written"
