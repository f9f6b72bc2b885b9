"""Values a config gives by reference, so secrets stay out of it: `${NAME}` in a string is taken
from the environment, and `KEY_file = PATH` reads KEY from a file (systemd's LoadCredential=,
Docker secrets). Such values never show in a message: their repr is the reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from stream_detector.errors import ConfigError

_REFERENCE = re.compile(r"\$\$|\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_VALUE_FILE = 64 * 1024  # a password or a URL; anything larger is the wrong file


class Expanded(str):
    """A string that came (at least in part) from the environment or a file. It is the value
    everywhere it is used; its repr, and so every config error that shows a value, is the
    reference (`'${NAME}'`, `<password_file /run/...>`), never the value."""

    template: str | None  # the text as written with ${NAME} references; None: read from `path`
    path: str

    def __new__(cls, value: str, template: str | None = None, path: str = "") -> Expanded:
        made = super().__new__(cls, value)
        made.template, made.path = template, path
        return made

    def __repr__(self) -> str:
        return repr(self.template) if self.template is not None else f"<contents of {self.path}>"

    def literal(self, part: str) -> bool:
        """Whether `part` of the value is written in the config file itself."""
        return self.template is not None and part in self.template


def expand(value: str, where: str, env: Mapping[str, str]) -> str:
    """`value` with each `${NAME}` replaced from `env` (`$$` is a literal `$`); an unset variable
    is an error naming the key and the variable, never the value."""
    if "$" not in value:
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{where}: ${{{name}}} is not a variable reference "
                              f"(letters, digits and '_'; write $$ for a literal $)")
        if name not in env:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return env[name]

    expanded = _REFERENCE.sub(one, value)
    referenced = any(m.group(1) is not None for m in _REFERENCE.finditer(value))
    return Expanded(expanded, template=value) if referenced else expanded


def read_value_file(path: str, where: str) -> Expanded:
    """The contents of a `KEY_file` as KEY's value, without its final line break."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_VALUE_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"{where}: {path}: cannot read ({exc.strerror})") from None
    if len(raw) > MAX_VALUE_FILE:
        raise ConfigError(f"{where}: {path}: over {MAX_VALUE_FILE // 1024} KiB: not a value file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: {path}: not UTF-8 text") from None
    text = text[:-1] if text.endswith("\n") else text
    text = text[:-1] if text.endswith("\r") else text
    return Expanded(text, path=str(Path(path)))
