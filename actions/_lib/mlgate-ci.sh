# shellcheck shell=bash
# Helpers shared by mlgate's composite actions (sourced by their `run:` steps).
#
# Every input reaches these functions through an environment variable set in the step's
# `env:` block, never through a `${{ }}` expression inside a script, so a value such as
# `x"; echo INJECTED >&2; echo "` or `$(id)` stays data: it is printed, never executed.

# shellcheck disable=SC2034  # the patterns are used by the actions that source this file
# Names a user gives to models and environments (mlgate.core.config.NAME_PATTERN).
MLGATE_NAME_RE='^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'
# Aliases of the MLflow Model Registry (mlgate.core.config.ALIAS_PATTERN).
MLGATE_ALIAS_RE='^[A-Za-z_][A-Za-z0-9_-]{0,62}$'
MLGATE_VERSION_RE='^[1-9][0-9]{0,9}$'

# mlgate_escape TEXT: TEXT escaped for the data part of a workflow command
# (GitHub Actions "Workflow commands": % CR LF are escaped).
mlgate_escape() {
  local s=$1
  s=${s//'%'/'%25'}
  s=${s//$'\r'/'%0D'}
  s=${s//$'\n'/'%0A'}
  printf '%s' "$s"
}

# mlgate_fail TITLE MESSAGE: print one error annotation and exit 2 (usage error).
mlgate_fail() {
  printf '::error title=%s::%s\n' "$1" "$(mlgate_escape "$2")"
  exit 2
}

# mlgate_check WHAT VALUE REGEX: an empty VALUE is accepted (the default applies);
# anything else must match REGEX, or the step fails printing the value literally.
mlgate_check() {
  local what=$1 value=$2 re=$3
  if [[ -n $value && ! $value =~ $re ]]; then
    mlgate_fail "mlgate: invalid ${what}" "invalid ${what} '${value}': it must match ${re}"
  fi
}

# mlgate_require WHAT VALUE REGEX: like mlgate_check, but VALUE must not be empty.
mlgate_require() {
  if [[ -z $2 ]]; then
    mlgate_fail "mlgate: missing ${1}" "the ${1} input is required"
  fi
  mlgate_check "$@"
}

# mlgate_check_bool WHAT VALUE: VALUE must be 'true' or 'false'.
mlgate_check_bool() {
  if [[ $2 != true && $2 != false ]]; then
    mlgate_fail "mlgate: invalid ${1}" "invalid ${1} '${2}': use 'true' or 'false'"
  fi
}

# mlgate_source_digest ROOT: a digest of the mlgate source in a checkout of this repository
# (pyproject.toml and src/), the same for every action of one ref wherever it was unpacked.
mlgate_source_digest() {
  (cd "$1" && find pyproject.toml src -type f -name '*.py' -o -type f -name pyproject.toml | LC_ALL=C sort \
    | xargs sha256sum | sha256sum | cut -c1-32)
}

# mlgate_ensure: make sure the mlgate that runs is the one at this action's own ref.
# install.sh records the digest of the source it installed in MLGATE_INSTALLED_DIGEST; when a
# job did not run actions/setup (or ran another ref), install from this action's checkout now.
mlgate_ensure() {
  local root
  root=$(cd "${GITHUB_ACTION_PATH:?}/../.." && pwd -P)
  if [[ ${MLGATE_INSTALLED_DIGEST:-} == "$(mlgate_source_digest "$root")" ]] && command -v mlgate >/dev/null 2>&1; then
    return 0
  fi
  bash "$root/actions/setup/install.sh"
  # install.sh installed into its virtual environment: later steps find it through GITHUB_PATH,
  # this step through PATH
  PATH="${MLGATE_VENV:-${RUNNER_TEMP:-/tmp}/mlgate-venv}/bin:$PATH"
  export PATH
}

# mlgate_common_args: the options every pipeline command takes, in the array MLGATE_ARGS:
# --config from MLGATE_CONFIG, and --model from MLGATE_MODEL when one was given.
mlgate_common_args() {
  MLGATE_ARGS=(--config "${MLGATE_CONFIG:-.mlgate.yml}")
  if [[ -n ${MLGATE_MODEL:-} ]]; then MLGATE_ARGS+=(--model "$MLGATE_MODEL"); fi
}

# mlgate_git_auth: when MLGATE_GITOPS_TOKEN is set, let git use it for HTTPS remotes (the
# GitOps repository) through an Authorization header in git's environment configuration
# (GIT_CONFIG_COUNT/KEY/VALUE), so that no credential is written to disk. Masked in logs.
mlgate_git_auth() {
  if [[ -z ${MLGATE_GITOPS_TOKEN:-} ]]; then return 0; fi
  local basic
  echo "::add-mask::$MLGATE_GITOPS_TOKEN"
  basic=$(printf 'x-access-token:%s' "$MLGATE_GITOPS_TOKEN" | base64 | tr -d '\n')
  echo "::add-mask::$basic"
  export GIT_CONFIG_COUNT=1
  export GIT_CONFIG_KEY_0=http.extraHeader
  export GIT_CONFIG_VALUE_0="Authorization: Basic $basic"
}
