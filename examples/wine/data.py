"""Wine data for the demo: scikit-learn's bundled wine dataset (178 samples, 3 classes).

`training_set()` and `evaluation_set()` split it once, deterministically, so that the
evaluation rows are never seen in training: mlgate scores candidate and champion on
`evaluation_set()` (see `validate.evaluation` in .mlgate.yml).
"""

from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split


def _split():
    X, y = load_wine(return_X_y=True, as_frame=True)
    return train_test_split(X, y, test_size=0.3, random_state=42, stratify=y)


def training_set():
    X_train, _X_eval, y_train, _y_eval = _split()
    return X_train, y_train


def evaluation_set():
    _X_train, X_eval, _y_train, y_eval = _split()
    return X_eval, y_eval
