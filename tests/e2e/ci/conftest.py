"""Fixtures of the CI tests (see ci_support.py for what they build)."""

from ci_support import published_mlgate, runner_python  # noqa: F401  (pytest fixtures)
