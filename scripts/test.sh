#!/usr/bin/env bash
# The test command: installs the test tools (scripts/setup.sh), then runs every test target.
#   scripts/test.sh                      # all tests
#   scripts/test.sh verify_              # only tests whose name contains verify_
#   PGBAK_TEST_THREADS=2 scripts/test.sh # fewer tests at once (default 4)
# Extra arguments go to the test binaries (after cargo's `--`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/setup.sh
exec cargo test --locked --all-targets -- --test-threads="${PGBAK_TEST_THREADS:-4}" "$@"
