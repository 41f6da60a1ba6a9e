# Shared by scripts/demo.sh and scripts/test.sh: create .venv and install diar into it.
# torch is pinned through constraints.txt so that pip never pulls a multi-GB CUDA build
# on a CPU machine; set DIAR_CONSTRAINTS to use another constraints file.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
VENV="${DIAR_VENV:-.venv}"
CONSTRAINTS="${DIAR_CONSTRAINTS:-constraints.txt}"
EXTRAS="${1:-}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.diar-installed${EXTRAS:+-$EXTRAS}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" -e ".${EXTRAS:+[$EXTRAS]}"
  touch "$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"
export RAY_USAGE_STATS_ENABLED=0
