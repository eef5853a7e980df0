"""Errors with the exit code the CLI returns for them.

Exit codes (documented in README.md, "Exit codes"):

====  ==========================================================================
0     success (gates passed, promotion landed, value already set)
1     a decision said no: a gate failed, a promotion was refused
2     usage, configuration or manifest error: fix the input and run again
3     infrastructure error: MLflow, git remote, Argo Server, Prometheus
      unreachable or answering 5xx; nothing was decided
====  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass


class MlgateError(Exception):
    """Base of every expected failure; the CLI prints ``str(err)`` and exits ``exit_code``."""

    exit_code = 2


class UsageError(MlgateError):
    """Bad arguments or an impossible request (exit 2)."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One located problem in a user-written file.

    ``line`` and ``col`` are 1-based, as editors and compilers print them.
    """

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ConfigError(MlgateError):
    """A user-written file (``.mlgate.yml``, ``bot.yml``) is invalid (exit 2).

    ``problems`` holds every problem found, each printed as ``FILE:LINE:COL: message``.
    """

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ManifestError(MlgateError):
    """A manifest edit cannot be made as asked (exit 2); the message starts with ``file:line``."""

    exit_code = 2




class Refused(MlgateError):
    """A promotion or command was refused by policy (exit 1); the message says why."""

    exit_code = 1


class InfraError(MlgateError):
    """A service mlgate depends on failed or could not be reached (exit 3).

    The message names the service and its address, never a secret.
    """

    exit_code = 3


class Unreachable(InfraError):
    """Nothing answers at the address: the connection was refused or the host name does not
    resolve (exit 3). Unlike a timeout or a 5xx, this says the address or the route is wrong;
    ``mlgate doctor`` reports it as a failed check."""
