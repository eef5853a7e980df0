"""Train a wine classifier inside the MLflow run that `mlgate train` started.

mlgate exports MLFLOW_TRACKING_URI and MLFLOW_RUN_ID, so `mlflow.start_run()` resumes
its run: parameters, metrics and the model land there.

The model is fitted on all of `data.training_set()` (124 rows) and its accuracy is measured on
the 54 held-out rows of `data.evaluation_set()`: the rows `mlgate validate` scores candidate and
champion on (validate.evaluation in .mlgate.yml). So the accuracy printed here is the number the
gate table shows for this version; those rows are only measured, never used to fit or choose.

    python train.py --model tree      # a shallow decision tree (weaker)
    python train.py --model logistic  # scaled logistic regression (stronger)
"""

import argparse

import mlflow
import sklearn
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from data import evaluation_set, training_set


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

    X_fit, y_fit = training_set()
    X_eval, y_eval = evaluation_set()
    with mlflow.start_run():
        model = build(args.model).fit(X_fit, y_fit)
        predicted = model.predict(X_eval)
        accuracy = accuracy_score(y_eval, predicted)
        mlflow.log_param("model_kind", args.model)
        mlflow.log_metric("accuracy_score", accuracy)
        mlflow.log_metric("f1_score", f1_score(y_eval, predicted, average="weighted"))
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X_fit, model.predict(X_fit)),
            # skip the 8-11 s pip requirement inference (see shared notes)
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            # MLflow stores sklearn models with skops; a tree's node storage must be
            # trusted explicitly (we built it ourselves).
            skops_trusted_types=["sklearn.tree._tree.Tree"] if args.model == "tree" else None,
        )
        # the gate table's format (4 significant digits): the same rows, so the same number
        print(f"trained {args.model} on {len(y_fit)} rows: accuracy_score {accuracy:.4g} on the {len(y_eval)} "
              "held-out rows of data.evaluation_set(), the rows mlgate validate scores")


if __name__ == "__main__":
    main()
