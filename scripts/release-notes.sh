#!/usr/bin/env bash
# Prints the CHANGELOG.md section of one version: the release workflow's release notes.
#   scripts/release-notes.sh 0.2.0 > notes.md
# Exits 1 when CHANGELOG.md has no "## [VERSION]" section (a tag without its changelog).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version="${1:?usage: scripts/release-notes.sh VERSION}"
awk -v heading="## [$version]" '
    index($0, heading) == 1 { found = 1; printing = 1; next }
    printing && /^## \[/ { printing = 0 }
    printing { print }
    END { if (!found) exit 1 }
' CHANGELOG.md | sed -e '/./,$!d' || {
    echo "release-notes: CHANGELOG.md has no \"## [$version]\" section" >&2
    exit 1
}
