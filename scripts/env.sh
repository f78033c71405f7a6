# Sourced by reproduce.sh and test.sh: create .venv (Python >= 3.11) once, install kdlib with the
# book and test extras, and register the Jupyter kernel `kdlib` that papermill uses.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "kdlib needs Python >= 3.11 (found $("$PY" --version))" >&2; exit 1; }
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.kdlib-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[all]"
  touch "$stamp"
fi
.venv/bin/python -m ipykernel install --user --name kdlib --display-name "Python (kdlib)" >/dev/null
export PATH="$PWD/.venv/bin:$PATH"
# OpenMP threads that spin while waiting stall each other when another process shares the cores
# (a notebook kernel beside its driver): measured 100x slower tiny forwards without this.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
