#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests when it is missing (idempotent).
# Playwright drives this binary; it never downloads a browser of its own.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "chromium is missing and installing it needs root: apt-get install -y chromium" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
test -x "$CHROMIUM"
echo "installed $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
