"""Train a wine classifier inside the MLflow run that `mlgate train` started.

mlgate exports MLFLOW_TRACKING_URI and MLFLOW_RUN_ID, so `mlflow.start_run()` resumes
its run: parameters, metrics and the model land there.

    python train.py --model tree      # a shallow decision tree (weaker)
    python train.py --model logistic  # scaled logistic regression (stronger)
"""

import argparse

import mlflow
import sklearn
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from data import training_set


def build(kind: str):
    if kind == "tree":
        return DecisionTreeClassifier(max_depth=3, random_state=0)
    if kind == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    raise SystemExit(f"unknown --model {kind!r} (tree or logistic)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="logistic", choices=["tree", "logistic"])
    args = parser.parse_args()

    X, y = training_set()
    X_fit, X_val, y_fit, y_val = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    with mlflow.start_run():
        model = build(args.model).fit(X_fit, y_fit)
        predicted = model.predict(X_val)
        mlflow.log_param("model_kind", args.model)
        mlflow.log_metric("accuracy_score", accuracy_score(y_val, predicted))
        mlflow.log_metric("f1_score", f1_score(y_val, predicted, average="weighted"))
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X_fit, predicted),
            # skip the 8-11 s pip requirement inference (see shared notes)
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            # MLflow stores sklearn models with skops; a tree's node storage must be
            # trusted explicitly (we built it ourselves).
            skops_trusted_types=["sklearn.tree._tree.Tree"] if args.model == "tree" else None,
        )
        print(f"trained {args.model}: validation accuracy {accuracy_score(y_val, predicted):.3f}")


if __name__ == "__main__":
    main()
