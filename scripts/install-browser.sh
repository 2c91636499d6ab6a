#!/usr/bin/env bash
# The browser tests drive Playwright with executable_path=/usr/bin/chromium: Playwright's own browser download
# is not reachable from these machines, Debian's package is. Installs it when missing (needs root, as on the
# development and CI machines); otherwise says what to run. Quiet and instant when it is already there.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "The browser tests need /usr/bin/chromium. Install it with:" >&2
  echo "  sudo apt-get install -y chromium fonts-dejavu-core" >&2
  echo "(carrying on: the browser tests will fail until then)" >&2
  exit 0
fi
echo "Installing Debian's chromium for the browser tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q chromium fonts-dejavu-core
