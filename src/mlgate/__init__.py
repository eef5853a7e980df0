"""mlgate: train, gate and promote ML models through CI and git.

Importing this package is cheap on purpose: heavy libraries (mlflow, sklearn,
PyGithub) are imported lazily by the edge modules that need them.
"""

__version__ = "0.1.0"
