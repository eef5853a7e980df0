#!/usr/bin/env bash
# The main job on embedded defaults (make demo): train → validate → register → promote.
#
# Everything it writes lives in examples/wine/.mlgate/: the MLflow store (SQLite) and a
# bare GitOps repository holding KServe InferenceService manifests for staging and
# production. Running it again adds new model versions to the same store.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# The demo always uses its embedded store, never a tracking server set in your shell.
unset MLFLOW_TRACKING_URI MLFLOW_REGISTRY_URI
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore}"
mkdir -p .mlgate

step "GitOps repository (.mlgate/gitops.git)"
if [ ! -d .mlgate/gitops.git ]; then
  git init --quiet --bare -b main .mlgate/gitops.git
  seed=$(mktemp -d)
  cp -R gitops-seed/. "$seed/"
  git -C "$seed" init --quiet -b main
  git -C "$seed" add -A
  git -C "$seed" -c user.name=demo -c user.email=demo@example.com commit --quiet -m "deployments of wine-classifier"
  git -C "$seed" push --quiet "$PWD/.mlgate/gitops.git" main
  rm -rf "$seed"
  echo "created .mlgate/gitops.git with staging/ and production/ InferenceService manifests"
else
  echo "reusing .mlgate/gitops.git"
fi

step "mlgate config check"
mlgate config check .mlgate.yml

step "1. train a first model (a shallow decision tree)"
mlgate train -- python train.py --model tree

step "1. validate it (against the champion, if there is one: on the first run there is none)"
mlgate validate

step "1. promote it to staging, then production (it becomes the champion)"
mlgate promote --to staging
mlgate promote --to production

step "2. train a different model (scaled logistic regression)"
mlgate train -- python train.py --model logistic

step "2. validate it against the champion, both scored on the same held-out rows"
if mlgate validate --report .mlgate/last-report.md; then
  step "2. gates passed: promote it to staging"
  mlgate promote --to staging
else
  echo "the gates above stopped this version: see the ❌ rows for which gate and by how much"
fi

step "mlgate status"
mlgate status

step "the last promotion commit in the GitOps repository"
git --git-dir=.mlgate/gitops.git --no-pager show --stat --patch HEAD

echo
echo "MLflow store: $PWD/.mlgate/mlflow.db (browse it: mlflow ui --backend-store-uri sqlite:///$PWD/.mlgate/mlflow.db)"
