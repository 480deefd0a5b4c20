#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests when it is missing (a second run does nothing).
# Playwright's own browser download (`playwright install`) needs the internet; the distribution package does not.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  sudo="sudo"
fi
echo "Installing chromium for the browser tests (apt-get)…"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
