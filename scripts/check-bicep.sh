#!/usr/bin/env bash
# Parses every infra/**/*.bicep with tree-sitter-bicep and fails on any syntax error
# (scripts/check_bicep.py says what else it checks). The parser lives in a venv under
# target/bicep-venv, created and filled from PyPI with pinned versions when missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/target/bicep-venv"
python="${PYTHON:-python3}"

pinned() {
  "$venv/bin/python" - <<'EOF' 2>/dev/null
from importlib.metadata import version
import sys
ok = version("tree-sitter") == "0.26.1" and version("tree-sitter-bicep") == "1.1.0"
sys.exit(0 if ok else 1)
EOF
}

if [ ! -x "$venv/bin/python" ] || ! pinned; then
  echo "check-bicep: installing tree-sitter 0.26.1 and tree-sitter-bicep 1.1.0 into $venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    tree-sitter==0.26.1 tree-sitter-bicep==1.1.0
  pinned
fi

exec "$venv/bin/python" "$root/scripts/check_bicep.py" "${1:-$root/infra}"
