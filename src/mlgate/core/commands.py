"""Comment parser: the body of a PR/MR comment → the mlgate commands it holds.

Pure core: no I/O (markdown-it-py and :mod:`html.parser` only parse text). :func:`parse` is the
only entry point.

Grammar (one command per line, the line starting with the command word)::

    /promote [MODEL][@VERSION] [to ENV]
    /rollback [MODEL] [ENV]
    /status
    /doctor
    /help
    /train [--gpus N]
    /abort
    /continue

Rules, each from a real-world report (issue 3, "Cases from real-world reports"; issue 10,
"Commands hidden in HTML, typos answered with silence"):

- The comment is read as CommonMark 0.31 (markdown-it-py, the parser GitHub- and
  GitLab-flavoured Markdown build on; GFM tables enabled). A command counts only when it starts
  one of the text lines of a top-level paragraph (§4.8), the line indented by at most three
  spaces; ``\\r\\n`` line ends and leading blank lines are fine.
- Nothing rendered as something else is a command: fenced and indented code (§4.4, §4.5), code
  spans (§6.1), block quotes with their lazy continuation lines (§5.1), list items (§5.2),
  table cells, headings, link text and image descriptions (§6.3, §6.4), link reference
  definitions (§4.7), HTML blocks (§4.6: ``<pre>``, ``<textarea>``, ``<script>``, comments...)
  and inline HTML (§6.6); nor any paragraph inside an HTML element left open by an HTML block or
  inline HTML (``<details>`` ... blank line ... ``/promote`` ... ``</details>``). So quoting
  someone's comment, the bot's own help text or a hidden block never triggers anything.
- A line that merely starts with a slash (``/promotions/2024 folder``, ``/promote-all``,
  ``/etc/hosts``) is not a command and yields nothing (no reply).
- A known command with an unknown flag or a malformed argument yields a :class:`CommandMistake`
  carrying the usage text; the caller replies with it and runs nothing. ``--help``/``-h`` after
  a command asks for its usage (a ``help`` :class:`Command` with a ``topic``; Atlantis does the
  same). A bare word that is a near miss of a command name (``/promot``, ``/hlep``, ``/stauts``:
  optimal-string-alignment distance, see :func:`near_miss`) yields a :class:`CommandMistake`
  that asks "did you mean".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from markdown_it import MarkdownIt
from markdown_it.token import Token

#: Usage line per command, shown in error replies and ``/help``.
USAGE: dict[str, str] = {
    "promote": "/promote [MODEL][@VERSION] [to ENV]",
    "rollback": "/rollback [MODEL] [ENV]",
    "status": "/status",
    "doctor": "/doctor",
    "help": "/help",
    "train": "/train [--gpus N]",
    "abort": "/abort",
    "continue": "/continue",
}

NAMES = tuple(USAGE)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # config.NAME_PATTERN
_VERSION = re.compile(r"^[vV]?([1-9][0-9]{0,9})$")
_WORD = re.compile(r"^/([A-Za-z]+)$")
_HELP_FLAGS = ("--help", "-h")

# Each line that could hold a command ("/" and a letter after at most its indentation) gets its
# "/" replaced by one private-use character naming the line (U+F0000 + line index) before the
# Markdown parse: the character is a letter to CommonMark (category Co, neither punctuation nor
# whitespace, and "/" sits between whitespace and a letter), so the parse is unchanged, and
# wherever the character lands in the token stream says what the line became.
_MARK_BASE = 0xF0000
_MAX_LINES = 0xFFFE  # Plane 15 holds this many; later lines are never commands
_MARKABLE = re.compile(r"^(\s*)/(?=[A-Za-z])")  # \s: a no-break space before "/" is fine too
_PRIVATE = re.compile("[\U000F0000-\U0010FFFF]")  # typed by a user, they would fake a mark
_MD = MarkdownIt("commonmark").enable("table")
# HTML elements without content (HTML Living Standard §13.1.2): they never enclose a command
_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())


@dataclass(frozen=True)
class Command:
    """One parsed command.

    ``name`` is one of :data:`NAMES`. ``model``/``version``/``environment`` are what the
    user typed (None = use the default); ``version`` is the MLflow version number as a string.
    ``gpus`` is set by ``/train --gpus N`` only. ``topic`` is set on a ``help`` command asked
    for as ``/NAME --help`` (or ``-h``): the command whose usage to show. ``line`` is the
    1-based line in the comment.
    """

    name: str
    model: str | None = None
    version: str | None = None
    environment: str | None = None
    gpus: int | None = None
    line: int = 1
    text: str = ""
    topic: str | None = None

    def describe(self) -> str:
        """The command as a person would write it back, e.g. ``/promote iris@7 to staging``."""
        if self.name == "help" and self.topic:
            return f"/{self.topic} --help"
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


#: ``<![`` up to the next ``>`` (or the end): a bogus comment in HTML, see :meth:`_OpenElements.feed`
_MARKED_SECTION = re.compile(r"<!\[([^>]*)>?")


class _OpenElements(HTMLParser):
    """The HTML elements left open by the raw HTML seen so far (HTML blocks and inline HTML in
    document order). An end tag closes its innermost open element and everything opened in it;
    a stray end tag is ignored, as browsers do."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open:
            del self.open[len(self.open) - 1 - self.open[::-1].index(tag):]

    def feed(self, data: str) -> None:
        """Feed raw HTML. ``<![`` opens a marked section to Python's parser, which raises
        AssertionError on one it does not know (``<![`` then a newline, found by Hypothesis); HTML
        (WHATWG "markup declaration open state") reads it as a bogus comment up to the next ``>``,
        so it is fed as that comment."""
        super().feed(_MARKED_SECTION.sub(lambda m: f"<!--{m.group(1)}-->", data))

    @property
    def inside(self) -> bool:
        """True while an element is open or a tag is still unfinished (``<div`` then a blank line)."""
        return bool(self.open) or "<" in self.rawdata


def _marked(lines: list[str]) -> str:
    """The comment with each command-like line's "/" replaced by its line's mark."""
    out = []
    for i, line in enumerate(lines):
        m = _MARKABLE.match(line) if i < _MAX_LINES else None
        out.append(f"{m.group(1)}{chr(_MARK_BASE + i)}{line[m.end():]}" if m else line)
    return "\n".join(out)


def _line_marks(inline: Token, html: _OpenElements, top_paragraph: bool) -> list[int]:
    """Line indexes whose mark starts a text line of ``inline`` outside any inline container
    (link, emphasis) and outside open HTML elements; feeds the inline HTML to ``html``."""
    found: list[int] = []
    line_start, depth = True, 0
    for child in inline.children or ():
        if child.type in ("softbreak", "hardbreak"):
            line_start = True
            continue
        if child.type == "html_inline":
            html.feed(child.content)
        elif top_paragraph and line_start and depth == 0 and not html.inside and child.type == "text":
            head = child.content.lstrip()[:1]  # Unicode spaces (U+00A0) stay in the paragraph's text
            if head and _MARK_BASE <= ord(head) < _MARK_BASE + _MAX_LINES:
                found.append(ord(head) - _MARK_BASE)
        depth += child.nesting
        line_start = False
    return found


def _candidate_lines(body: str) -> list[tuple[int, str]]:
    """(1-based line number, stripped line) of every line that starts with "/" and a letter and
    that CommonMark renders as the start of a text line of a top-level paragraph, outside HTML.

    The rules are the module's (CommonMark 0.31); a line indented by four or more columns is
    never a command (an indented code block, §4.4, or a paragraph continuation line).
    """
    text = _PRIVATE.sub("\ufffd", body.replace("\r\n", "\n").replace("\r", "\n"))
    lines = text.split("\n")
    try:
        tokens = _MD.parse(_marked(lines))
    except Exception:  # pragma: no cover - markdown-it-py does not raise on text; fail closed
        return []
    html = _OpenElements()
    found: list[int] = []
    for i, tok in enumerate(tokens):
        if tok.type == "html_block":
            html.feed(tok.content)
        elif tok.type == "inline":
            parent = tokens[i - 1] if i else None
            top = parent is not None and parent.type == "paragraph_open" and parent.level == 0
            found += _line_marks(tok, html, top)
    out = []
    for idx in found:
        line = lines[idx]
        expanded = line.expandtabs(4)
        if len(expanded) - len(expanded.lstrip(" ")) < 4:
            out.append((idx + 1, line.strip()))
    return out


def osa_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance (Damerau-Levenshtein without repeated edits of one
    substring): insertions, deletions, substitutions and transpositions of adjacent characters
    each cost 1. ``osa_distance("hlep", "help") == 1``."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


def near_miss(word: str) -> str | None:
    """The command name ``word`` (lower case, without the slash) most likely misspells, or None.

    A near miss is at most one edit away for words of up to four letters and at most two for
    longer ones (``/hlep``, ``/promot``, ``/stauts``, ``/rolback``), the distance smaller than
    the word itself; a word that extends a command name (``/promoted``, ``/helpful``) is another
    word. Ties go to the first name in :data:`NAMES`.
    """
    if word in USAGE or any(word.startswith(n) for n in NAMES):
        return None
    limit = 1 if len(word) <= 4 else 2
    best = min(NAMES, key=lambda n: osa_distance(word, n))
    d = osa_distance(word, best)
    return best if d <= limit and d < len(word) else None


def parse(body: str) -> list[Command | CommandMistake]:
    """Every command in a comment body, in order.

    Args:
        body: the comment text as the forge sent it (Markdown; any line ends).

    Returns:
        One :class:`Command` per well-formed command line, one :class:`CommandMistake` per
        malformed one (a near miss of a command name included); an empty list when the comment
        holds no command (then the bot stays silent). Lines are read as the module docstring
        says (CommonMark 0.31). Never raises.
    """
    found: list[Command | CommandMistake] = []
    if not body:
        return found
    for no, line in _candidate_lines(body):
        words = line.split()
        m = _WORD.match(words[0])
        if not m:
            continue  # "/promotions/2024", "/promote-all", "/etc/hosts": not a command
        name = m.group(1).lower()
        if name not in USAGE:
            close = near_miss(name)
            if close:
                found.append(CommandMistake(name=name, message=f"unknown command /{name}; did you mean /{close}?",
                                            line=no, text=line, usage=(USAGE[close],)))
            continue
        found.append(_parse_one(name, words[1:], no, line))
    return found


def _error(name: str, message: str, no: int, line: str) -> CommandMistake:
    return CommandMistake(name=name, message=message, line=no, text=line, usage=(USAGE[name],))


def _parse_one(name: str, args: list[str], no: int, line: str) -> Command | CommandMistake:
    if any(a.lower() in _HELP_FLAGS for a in args):
        return Command(name="help", line=no, text=line, topic=None if name == "help" else name)
    flags = [a for a in args if a.startswith("-") and a != "-"]
    if name == "doctor":  # read only: the checks of `mlgate doctor` for the default branch's config
        if args:
            return _error(name, f"/doctor takes no arguments (got {' '.join(args)!r})", no, line)
        return Command(name=name, line=no, text=line)
    if name == "train":
        return _parse_train(args, no, line)
    if flags:
        return _error(name, f"unknown flag {flags[0]!r}", no, line)
    if name in ("status", "help", "abort", "continue"):
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


def help_text(topic: str | None = None) -> str:
    """The ``/help`` reply (Markdown); with ``topic`` (a name in :data:`NAMES`, from
    ``/NAME --help``), the usage of that command alone. Commands are in a code block so they
    never trigger. Unknown topics get the full help."""
    if topic in USAGE:
        return "\n".join([f"Usage of /{topic}:", "", "```", USAGE[topic], "```"])
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
