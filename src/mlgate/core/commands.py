"""Comment parser: the body of a PR/MR comment → the mlgate commands it holds.

Pure core: no I/O. :func:`parse` is the only entry point.

Grammar (one command per line, the line starting with the command word)::

    /promote [MODEL][@VERSION] [to ENV]
    /rollback [MODEL] [ENV]
    /status
    /help
    /train [--gpus N]
    /abort

Rules, each from a real-world report (issue 3, "Cases from real-world reports"):

- Only a command at the start of a line counts. Up to three leading spaces and any trailing
  spaces are allowed; ``\\r\\n`` line ends and leading blank lines are fine.
- Quoted lines (``> /promote``), fenced code blocks (```` ``` ```` or ``~~~``) and indented
  code blocks (four spaces or a tab, CommonMark 0.31 §4.4/§4.5) are not commands, so quoting
  someone's comment or the bot's own help text never triggers anything.
- A line that merely starts with a slash (``/promotions/2024 folder``, ``/promote-all``,
  ``/etc/hosts``) is not a command and yields nothing (no reply).
- A known command with an unknown flag or a malformed argument yields a :class:`CommandMistake`
  carrying the usage text; the caller replies with it and runs nothing. A bare word that is a
  near miss of a command name (``/promot``) yields a :class:`CommandMistake` too.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

#: Usage line per command, shown in error replies and ``/help``.
USAGE: dict[str, str] = {
    "promote": "/promote [MODEL][@VERSION] [to ENV]",
    "rollback": "/rollback [MODEL] [ENV]",
    "status": "/status",
    "help": "/help",
    "train": "/train [--gpus N]",
    "abort": "/abort",
}

NAMES = tuple(USAGE)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # config.NAME_PATTERN
_VERSION = re.compile(r"^[vV]?([1-9][0-9]{0,9})$")
_WORD = re.compile(r"^/([A-Za-z]+)$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


@dataclass(frozen=True)
class Command:
    """One parsed command.

    ``name`` is one of :data:`NAMES`. ``model``/``version``/``environment`` are what the
    user typed (None = use the default); ``version`` is the MLflow version number as a string.
    ``gpus`` is set by ``/train --gpus N`` only. ``line`` is the 1-based line in the comment.
    """

    name: str
    model: str | None = None
    version: str | None = None
    environment: str | None = None
    gpus: int | None = None
    line: int = 1
    text: str = ""

    def describe(self) -> str:
        """The command as a person would write it back, e.g. ``/promote iris@7 to staging``."""
        parts = [f"/{self.name}"]
        if self.name == "promote":
            target = (self.model or "") + (f"@{self.version}" if self.version else "")
            if target:
                parts.append(target)
            if self.environment:
                parts += ["to", self.environment]
        elif self.name == "rollback":
            parts += [p for p in (self.model, self.environment) if p]
        elif self.name == "train" and self.gpus is not None:
            parts += ["--gpus", str(self.gpus)]
        return " ".join(parts)


@dataclass(frozen=True)
class CommandMistake:
    """A command the user meant but wrote wrongly: reply with ``message`` and ``usage``."""

    name: str
    message: str
    line: int = 1
    text: str = ""
    usage: tuple[str, ...] = field(default_factory=tuple)

    def reply(self) -> str:
        """Markdown reply text: the problem and the usage lines."""
        lines = [f"`{self.text.strip()}`: {self.message}", "", "Usage:"]
        lines += [f"    {u}" for u in (self.usage or tuple(USAGE.values()))]
        return "\n".join(lines)


def _candidate_lines(body: str) -> list[tuple[int, str]]:
    """(1-based line number, line) of every line that is not quoted, inside code or inside an
    HTML comment.

    CommonMark (0.31): fenced code (§4.5) and indented code (§4.4) are skipped; a block quote
    (§5.1) includes its *lazy continuation lines* (non-blank lines right after a ``>`` line,
    until a blank line); an HTML comment (§4.6 type 2, ``<!--`` ... ``-->``) is not rendered,
    so no line inside one is a command.
    """
    out: list[tuple[int, str]] = []
    fence: str | None = None  # the opening fence run (e.g. "```") while inside a fenced block
    in_comment = False  # inside a multi-line HTML comment
    quoted = False  # inside a block quote (lazy continuation until a blank line)
    for no, raw in enumerate(body.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        line = raw.rstrip()
        if in_comment:
            if "-->" in line:
                in_comment = False
                _rest = line.split("-->")[-1]
                if "<!--" in _rest:
                    in_comment = True
            continue
        if fence is not None:
            m = _FENCE.match(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not m.group(2).strip():
                fence = None
            continue
        m = _FENCE.match(line)
        if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
            fence = m.group(1)
            quoted = False
            continue
        if not line.strip():
            quoted = False
            continue
        opened = line.rfind("<!--")
        if opened >= 0 and line.find("-->", opened + 4) < 0:
            in_comment = True  # the comment runs on to a later line; this line itself is text up to "<!--"
        if quoted:
            continue  # lazy continuation of a block quote
        expanded = line.expandtabs(4)
        indent = len(expanded) - len(expanded.lstrip(" "))
        if indent >= 4:
            # an indented code block (CommonMark §4.4), or a paragraph continuation line:
            # neither starts a line with a command
            continue
        stripped = line.strip()
        if stripped.startswith(">"):
            quoted = True
            continue
        out.append((no, stripped))
    return out


def parse(body: str) -> list[Command | CommandMistake]:
    """Every command in a comment body, in order.

    Args:
        body: the comment text as the forge sent it (Markdown; any line ends).

    Returns:
        One :class:`Command` per well-formed command line, one :class:`CommandMistake` per
        malformed one; an empty list when the comment holds no command (then the bot
        stays silent). Never raises.
    """
    found: list[Command | CommandMistake] = []
    if not body:
        return found
    for no, line in _candidate_lines(body):
        if not line.startswith("/"):
            continue
        words = line.split()
        head = words[0]
        m = _WORD.match(head)
        if not m:
            continue  # "/promotions/2024", "/promote-all", "/etc/hosts": not a command
        name = m.group(1).lower()
        args = words[1:]
        if name not in USAGE:
            close = difflib.get_close_matches(name, NAMES, n=1, cutoff=0.8)
            if close and len(name) <= len(close[0]) + 1 and not name.startswith(close[0]):
                found.append(
                    CommandMistake(
                        name=name,
                        message=f"unknown command /{name}; did you mean /{close[0]}?",
                        line=no,
                        text=line,
                        usage=(USAGE[close[0]],),
                    )
                )
            continue
        found.append(_parse_one(name, args, no, line))
    return found


def _error(name: str, message: str, no: int, line: str) -> CommandMistake:
    return CommandMistake(name=name, message=message, line=no, text=line, usage=(USAGE[name],))


def _parse_one(name: str, args: list[str], no: int, line: str) -> Command | CommandMistake:
    flags = [a for a in args if a.startswith("-") and a != "-"]
    if name == "train":
        return _parse_train(args, no, line)
    if flags:
        return _error(name, f"unknown flag {flags[0]!r}", no, line)
    if name in ("status", "help", "abort"):
        if args:
            return _error(name, f"/{name} takes no arguments (got {' '.join(args)!r})", no, line)
        return Command(name=name, line=no, text=line)
    if name == "promote":
        return _parse_promote(args, no, line)
    return _parse_rollback(args, no, line)


def _parse_promote(args: list[str], no: int, line: str) -> Command | CommandMistake:
    model = version = env = None
    rest = list(args)
    if rest and rest[0].lower() != "to":
        target = rest.pop(0)
        name_part, at, ver_part = target.partition("@")
        if name_part:
            if not _NAME.match(name_part):
                return _error("promote", f"{name_part!r} is not a model name", no, line)
            model = name_part
        if at:
            vm = _VERSION.match(ver_part)
            if not vm:
                return _error("promote", f"{ver_part!r} is not a version number (write @7)", no, line)
            version = vm.group(1)
    if rest:
        if rest[0].lower() != "to":
            return _error("promote", f"unexpected {rest[0]!r}; write 'to ENV' to name the environment", no, line)
        if len(rest) != 2:
            return _error("promote", "'to' needs exactly one environment name after it", no, line)
        if not _NAME.match(rest[1]):
            return _error("promote", f"{rest[1]!r} is not an environment name", no, line)
        env = rest[1]
    return Command(name="promote", model=model, version=version, environment=env, line=no, text=line)


def _parse_rollback(args: list[str], no: int, line: str) -> Command | CommandMistake:
    if len(args) > 2:
        return _error("rollback", f"too many arguments ({' '.join(args)!r})", no, line)
    for a in args:
        if not _NAME.match(a):
            return _error("rollback", f"{a!r} is not a model or environment name", no, line)
    model = args[0] if len(args) >= 1 else None
    env = args[1] if len(args) == 2 else None
    # one word may name the environment instead of the model: the handler, which knows
    # the configured names, resolves it (see resolve_rollback_word)
    return Command(name="rollback", model=model, environment=env, line=no, text=line)


def _parse_train(args: list[str], no: int, line: str) -> Command | CommandMistake:
    gpus: int | None = None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--gpus" or a.startswith("--gpus="):
            if a == "--gpus":
                if i + 1 >= len(args):
                    return _error("train", "--gpus needs a number", no, line)
                value = args[i + 1]
                i += 2
            else:
                value = a.split("=", 1)[1]
                i += 1
            if not re.fullmatch(r"[0-9]{1,3}", value):
                return _error("train", f"--gpus needs a whole number, got {value!r}", no, line)
            gpus = int(value)
            continue
        if a.startswith("-"):
            return _error("train", f"unknown flag {a!r}", no, line)
        return _error("train", f"unexpected argument {a!r}", no, line)
    return Command(name="train", gpus=gpus, line=no, text=line)


def resolve_rollback_word(cmd: Command, model: str, environments: list[str]) -> Command:
    """``/rollback X``: X is the environment when it names one and is not the model.

    Pure helper for the handler; returns a new :class:`Command`.
    """
    if cmd.name != "rollback" or cmd.environment is not None or cmd.model is None:
        return cmd
    if cmd.model != model and cmd.model in environments:
        return Command(name="rollback", model=None, environment=cmd.model, line=cmd.line, text=cmd.text)
    return cmd


def help_text() -> str:
    """The ``/help`` reply (Markdown). Commands are in a code block so they never trigger."""
    return "\n".join(
        [
            "mlgate commands (one per line, at the start of the line):",
            "",
            "```",
            *USAGE.values(),
            "```",
            "",
            "MODEL defaults to the repository's model, VERSION to the version registered for the "
            "PR's head commit, ENV to the first environment in `.mlgate.yml`.",
        ]
    )
