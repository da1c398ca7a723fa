# Shared by scripts/serve and scripts/test: a .venv with the pinned packages and the project.
# Installs exactly what the lock file pins (requirements.lock, or requirements-dev.lock for the
# dev extras), then the project itself with --no-deps. Re-installs only when pyproject.toml
# or the lock file changed (a stamp file remembers their hash).
set -euo pipefail
ensure_venv() {
  local extras="$1"
  local py="${PYTHON:-python3}"
  if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "MailFlow Lab needs Python 3.11 or newer (found: $("$py" --version 2>&1))." >&2
    echo "Install it (Debian: apt-get install python3 python3-venv) or set PYTHON=/path/to/python3.11." >&2
    exit 1
  fi
  if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv || {
      echo "Could not create .venv. On Debian: apt-get install python3-venv" >&2
      exit 1
    }
  fi
  local lock="requirements.lock"
  [ -n "$extras" ] && lock="requirements-${extras}.lock"
  local stamp=".venv/.installed-${extras:-base}-$(cat pyproject.toml "$lock" | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "Installing MailFlow Lab into .venv (once; log: .venv/install.log)…"
    .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    if ! { .venv/bin/python -m pip install --quiet -r "$lock" &&
           .venv/bin/python -m pip install --quiet --no-deps -e .; } \
         >.venv/install.log 2>&1; then
      cat .venv/install.log >&2
      echo "Installing the Python packages failed (see above)." >&2
      exit 1
    fi
    touch "$stamp"
  fi
}
