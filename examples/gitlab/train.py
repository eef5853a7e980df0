"""A stand-in for your training code, with the standard library and the MLflow client only.

`mlgate train` runs it inside an MLflow run (MLFLOW_RUN_ID and MLFLOW_TRACKING_URI are set), so
what it logs lands in that run: it fits a one-feature threshold classifier on synthetic data,
logs accuracy_score, and logs the model (a JSON file) as the run's MLflow model, which mlgate
registers. A real project calls mlflow.<flavor>.log_model(..., name="model") instead, with the
flavor's packages in its requirements.
"""

import json
import os
import random
import tempfile

import mlflow
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus


def dataset(n: int, seed: int) -> list[tuple[float, int]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        rows.append((rng.gauss(1.0 if label else -1.0, 0.8), label))
    return rows


def accuracy(threshold: float, rows: list[tuple[float, int]]) -> float:
    return sum((x > threshold) == bool(y) for x, y in rows) / len(rows)


def main() -> None:
    train, held_out = dataset(400, seed=1), dataset(200, seed=2)
    threshold = max((x for x, _ in train), key=lambda t: accuracy(t, train))
    with mlflow.start_run() as run:
        mlflow.log_param("threshold", round(threshold, 4))
        mlflow.log_metric("accuracy_score", accuracy(threshold, held_out))
        client = MlflowClient()
        model = client.create_logged_model(run.info.experiment_id, name="model", source_run_id=run.info.run_id)
        with tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, "model.json"), "w", encoding="utf-8") as fh:
                json.dump({"threshold": threshold}, fh)
            client.log_model_artifacts(model.model_id, folder)
        client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        print(f"threshold {threshold:.3f}: held-out accuracy {accuracy(threshold, held_out):.3f}")


if __name__ == "__main__":
    main()
