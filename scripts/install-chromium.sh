#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver (Debian's `chromium` and
# `chromium-driver`) for the portal's browser test
# (contract-tests/tests/pdf_entry_browser.rs), which runs this when it finds
# no chromedriver. Idempotent: does nothing when /usr/bin/chromedriver is
# there. Needs root (or sudo) and the Debian package mirrors.
set -euo pipefail

if [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/chromium ]; then
    exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "install-chromium.sh: not root and no sudo: install chromium and chromium-driver" >&2
        exit 1
    fi
fi

$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver

/usr/bin/chromedriver --version
