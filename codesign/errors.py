"""Errors that reach the user as one line.

Anything wrong with the user's input or environment raises :class:`CodesignError` (or a
subclass) with a message that names the problem and the fix. The CLI prints it without a
traceback and exits with status 1.
"""


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped (``\\n``, ``\\x1b``): a name
    from a model file cannot break an error line or a table row, nor reach the terminal raw."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def validation_message(error: dict) -> str:
    """The message of one pydantic error (an entry of ``ValidationError.errors()``) without
    pydantic's ``Value error, `` prefix."""
    return error["msg"].removeprefix("Value error, ")


class CodesignError(Exception):
    """A problem with the user's input or environment, reported as one line (exit status 1)."""


class ToolNotFound(CodesignError):
    """An external tool (simulator, Yosys) is missing; the message says how to install it."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so it cleans up as after Ctrl-C (exit status 143)."""
