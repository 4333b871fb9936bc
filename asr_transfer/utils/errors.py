"""User errors: a fault in what the user gave (a setting, a path, a file, a manifest row), not in the code.

Every entry point prints one as a single line, ``Error: <what>, <where>. Fix: <how>``, and keeps the traceback
in ``train.log`` (``asr_transfer/console.py``); any other exception is a programming error and keeps its
traceback. The subclasses also derive from the builtin type callers already catch (``ValueError``,
``FileNotFoundError``), so raising one instead of the builtin changes nothing for them.
"""

from __future__ import annotations


class UserError(Exception):
    """``what`` went wrong, ``where`` (a file and row, a config key, a command-line override), and the ``fix``.

    ``fix`` falls back to the class's ``fix`` (a subclass's usual way on). A message passed whole as ``what``
    (one already holding ``". Fix: "``) is kept as it is.
    """

    fix = ""

    def __init__(self, what: str, where: str = "", fix: str = "") -> None:
        self.what, self.where = what, where
        self.fix_text = fix or self.fix
        message = what + (f", {where}" if where else "")
        if self.fix_text and ". Fix: " not in message:
            message += f". Fix: {self.fix_text}"
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:  # OSError subclasses would otherwise format their own "[Errno ...]" text
        return self.message

    def error_line(self) -> str:
        """The console's one line."""
        return f"Error: {self.message}"


class ConfigError(UserError, ValueError):
    """A setting with a value that cannot work (``data.corpus.root`` unset, a fraction above 1)."""


class MissingPathError(UserError, FileNotFoundError):
    """A path a setting names that does not exist or holds nothing usable."""


class DownloadError(UserError, RuntimeError):
    """A corpus or file that could not be downloaded (offline, a proxy, a moved URL)."""


def first_line(exc: BaseException, limit: int = 160) -> str:
    """An exception's message as one short line (a cause quoted inside a user error's one line)."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."
