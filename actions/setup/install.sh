#!/usr/bin/env bash
# Install mlgate into a virtual environment, never into the runner's own Python, and put the
# environment's bin/ on PATH for the later steps (GITHUB_PATH). By default mlgate comes from this
# checkout of the action's repository, i.e. the action's own ref (`uses: OWNER/mlgate/actions/setup@v1`
# installs the code of v1), with the extras the repository's config needs (`mlgate config extras`):
# the base first, then the extras only when there are any (no second resolver run otherwise).
#
# Environment (all optional):
#   MLGATE_PYTHON        the interpreter that creates the virtual environment (default: python3,
#                        else python, on PATH); it is used for nothing else
#   MLGATE_VENV          the virtual environment (default: $RUNNER_TEMP/mlgate-venv, reused when present)
#   MLGATE_INSTALL       what pip installs as mlgate: a requirement (mlgate==1.2.0, mlgate @ git+URL@REF),
#                        a local path or a wheel; empty: this action's checkout
#   MLGATE_EXTRAS        "auto" (default): ask `mlgate config extras`; "none": the base only; else
#                        extras separated by commas (local, evaluate, bot...)
#   MLGATE_CONFIG        the config `mlgate config extras` reads (default .mlgate.yml)
#   MLGATE_REQUIREMENTS  a requirements file installed into the same environment
# Writes PATH/VIRTUAL_ENV/MLGATE_INSTALLED_DIGEST to $GITHUB_PATH/$GITHUB_ENV, mlgate-version,
# python-path and extras to $GITHUB_OUTPUT.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
extras=${MLGATE_EXTRAS:-auto}
install=${MLGATE_INSTALL:-}
config=${MLGATE_CONFIG:-.mlgate.yml}
requirements=${MLGATE_REQUIREMENTS:-}
venv=${MLGATE_VENV:-${RUNNER_TEMP:-/tmp}/mlgate-venv}
base_python=${MLGATE_PYTHON:-$(command -v python3 || command -v python || true)}
if [[ -z $base_python ]] || ! command -v "$base_python" >/dev/null 2>&1; then
  echo "::error title=mlgate setup::no Python '${base_python:-python3}': install Python on the runner, set the python input, or use actions/setup-hosted"
  exit 2
fi
if [[ ! $extras =~ ^[A-Za-z0-9_,-]*$ ]]; then
  echo "::error title=mlgate setup::invalid extras '${extras//$'\n'/ }': auto, none, or names separated by commas"
  exit 2
fi

python=$venv/bin/python
if [[ ! -x $python ]]; then
  echo "Creating the virtual environment $venv with $(command -v "$base_python")"
  "$base_python" -m venv "$venv"
fi
export PATH="$venv/bin:$PATH" VIRTUAL_ENV=$venv
if [[ -n ${GITHUB_PATH:-} ]]; then echo "$venv/bin" >> "$GITHUB_PATH"; fi
if [[ -n ${GITHUB_ENV:-} ]]; then echo "VIRTUAL_ENV=$venv" >> "$GITHUB_ENV"; fi

# with_extras SPEC EXTRAS: SPEC asking for EXTRAS, whatever its form (a path, a wheel, a URL,
# `name @ URL`, `name==1.2`).
with_extras() {
  local spec=$1 extras=$2
  if [[ -z $extras ]]; then printf '%s' "$spec"
  elif [[ -e $spec || $spec == */* && ! $spec =~ ^[A-Za-z0-9._-]+[[:space:]]*@ ]]; then
    if [[ $spec == *://* ]]; then printf 'mlgate[%s] @ %s' "$extras" "$spec"
    else printf '%s[%s]' "$spec" "$extras"; fi
  elif [[ $spec =~ ^([A-Za-z0-9._-]+)(.*)$ ]]; then printf '%s[%s]%s' "${BASH_REMATCH[1]}" "$extras" "${BASH_REMATCH[2]}"
  else printf '%s' "$spec"; fi
}
pip_install() { "$python" -m pip install --disable-pip-version-check --progress-bar off "$@"; }

spec=${install:-$root}
reqs=()
if [[ -n $requirements ]]; then reqs=(-r "$requirements"); fi
echo "Installing mlgate from ${install:-${GITHUB_ACTION_REPOSITORY:-$root}@${GITHUB_ACTION_REF:-local}} into $venv"
case $extras in
  auto)
    pip_install "$spec" "${reqs[@]}"
    if [[ -f $config ]]; then
      extras=$("$venv/bin/mlgate" config extras --config "$config")
      echo "$config needs the extras: ${extras:-none (the base install)}"
    else
      echo "no $config here: the base install (set the extras input to choose)"
      extras=
    fi
    if [[ -n $extras ]]; then pip_install "$(with_extras "$spec" "$extras")" "${reqs[@]}"; fi
    ;;
  none) extras=; pip_install "$spec" "${reqs[@]}" ;;
  *) pip_install "$(with_extras "$spec" "$extras")" "${reqs[@]}" ;;
esac

mlgate_bin=$venv/bin/mlgate
version=$("$mlgate_bin" --version)
echo "$version ($mlgate_bin)"
# shellcheck source=SCRIPTDIR/../_lib/mlgate-ci.sh
source "$root/actions/_lib/mlgate-ci.sh"
if [[ -n ${GITHUB_ENV:-} ]]; then echo "MLGATE_INSTALLED_DIGEST=$(mlgate_source_digest "$root")" >> "$GITHUB_ENV"; fi
if [[ -n ${GITHUB_OUTPUT:-} ]]; then
  {
    echo "mlgate-version=${version##* }"
    echo "python-path=$python"
    echo "extras=$extras"
  } >> "$GITHUB_OUTPUT"
fi
