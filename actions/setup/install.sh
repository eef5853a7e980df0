#!/usr/bin/env bash
# Install mlgate from this checkout of the action's repository, i.e. at the action's own
# ref (`uses: OWNER/mlgate/actions/setup@v1` installs the code of v1), into the Python that
# runs the job, together with the user's training requirements.
#
# Environment (all optional):
#   MLGATE_EXTRAS        mlgate extras, comma-separated (e.g. "demo")
#   MLGATE_REQUIREMENTS  a requirements file to install in the same environment
#   MLGATE_PYTHON        the Python to use (default: python3, else python, on PATH)
# Writes MLGATE_INSTALLED_FROM to $GITHUB_ENV, mlgate-version to $GITHUB_OUTPUT.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
extras=${MLGATE_EXTRAS:-}
requirements=${MLGATE_REQUIREMENTS:-}
python=${MLGATE_PYTHON:-$(command -v python3 || command -v python || true)}
if [[ -z $python ]]; then
  echo "::error title=mlgate setup::no python3 on PATH: set python-version or install Python on the runner"
  exit 2
fi

if [[ ! $extras =~ ^[A-Za-z0-9_,-]*$ ]]; then
  echo "::error title=mlgate setup::invalid extras '${extras//$'\n'/ }': use names separated by commas"
  exit 2
fi

# A system Python that forbids pip installs (PEP 668, e.g. Ubuntu's python3 when
# python-version is empty) gets a virtual environment that later steps find on PATH.
if "$python" - <<'PY'
import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)
PY
then
  venv="${RUNNER_TEMP:-/tmp}/mlgate-venv"
  echo "$python is externally managed (PEP 668): installing into the virtual environment $venv"
  "$python" -m venv --system-site-packages "$venv"
  python="$venv/bin/python"
  export PATH="$venv/bin:$PATH"
  if [[ -n ${GITHUB_PATH:-} ]]; then echo "$venv/bin" >> "$GITHUB_PATH"; fi
  if [[ -n ${GITHUB_ENV:-} ]]; then echo "VIRTUAL_ENV=$venv" >> "$GITHUB_ENV"; fi
fi

spec=$root
if [[ -n $extras ]]; then spec="${root}[${extras}]"; fi
args=(-m pip install --disable-pip-version-check --progress-bar off "$spec")
if [[ -n $requirements ]]; then args+=(-r "$requirements"); fi
echo "Installing mlgate from ${GITHUB_ACTION_REPOSITORY:-$root}@${GITHUB_ACTION_REF:-local} with $python"
"$python" "${args[@]}"

bin=$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
mlgate_bin="$bin/mlgate"
if [[ ! -x $mlgate_bin ]]; then mlgate_bin=$(command -v mlgate); fi
version=$("$mlgate_bin" --version)
echo "$version ($mlgate_bin)"
# shellcheck source=SCRIPTDIR/../_lib/mlgate-ci.sh
source "$root/actions/_lib/mlgate-ci.sh"
if [[ -n ${GITHUB_ENV:-} ]]; then echo "MLGATE_INSTALLED_DIGEST=$(mlgate_source_digest "$root")" >> "$GITHUB_ENV"; fi
if [[ -n ${GITHUB_OUTPUT:-} ]]; then
  echo "mlgate-version=${version##* }" >> "$GITHUB_OUTPUT"
  echo "python-path=$python" >> "$GITHUB_OUTPUT"
fi
