"""Storage URLs as text: the default and $HPO_STORAGE, a password masked in all that is printed,
the SQLite file a URL names, the PostgreSQL driver. No database library: the CLI's flags use it
before anything is opened.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import urllib.parse
from pathlib import Path

# Where a study's TensorBoard events, cached and exported models and report go, relative to the
# current directory; the default storage lies in it too (optuna-dashboard 0.21 serves it offline).
RUNS_DIR = Path("runs")
DEFAULT_STORAGE = f"sqlite:///{RUNS_DIR.as_posix()}/hpo.db"
# Read when --storage is not given: keeps a database password off the command line (and out of
# `ps`), and is how `hpo run --jobs N` hands the URL to its workers.
STORAGE_ENV = "HPO_STORAGE"
# What a command to paste writes for a password: *** pasted would fail to log in, this says
# what goes there (the placeholder `hpo run --help` uses in its example).
PASSWORD_PLACEHOLDER = "PASSWORD"


def default_storage() -> str:
    return os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


# A password in the URL's user part (user:pw@host) or its query (?password=pw, libpq's name).
_URL_PASSWORD = re.compile(r"://[^/:@\s]*:([^@/\s]+)@|[?&]password=([^&#\s]*)", re.IGNORECASE)


def mask_url(url: str, placeholder: str = "***") -> str:
    """The URL with any password replaced by ``placeholder``, for everything printed or stored
    (*** there; a command to paste writes PASSWORD_PLACEHOLDER, which says what goes there)."""
    # Up to the last @ before the path: a password with an unescaped @ ("pa@ss") is all of it.
    masked = re.sub(r"(://[^/:@\s]*:)[^/?#\s]*@", rf"\g<1>{placeholder}@", url)
    masked = re.sub(r"([?&]password=)[^&#\s]*", rf"\g<1>{placeholder}", masked, flags=re.IGNORECASE)
    password = _password(url) if masked == url else None
    if password and f":{password}@" in masked:  # one the pattern missed: "ab/cd" (SQLAlchemy's)
        return masked.replace(f":{password}@", f":{placeholder}@", 1)
    return masked


def at_in_password(url: str) -> bool:
    """Whether the URL's password holds an unescaped @: SQLAlchemy then ends the password at
    the first @ and reads the rest as the host (and a driver's error would print it)."""
    userinfo = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0].rpartition("@")[0]
    return "@" in userinfo.partition(":")[2]


def _password(url: str) -> str | None:
    """The password as SQLAlchemy reads the URL (imported here: the CLI's flags use this module
    before any database library is loaded)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:  # not a URL SQLAlchemy reads: its own error comes when it is opened
        return None


def mask_text(text: str, url: str) -> str:
    """``text`` (a driver's error message, say) on one line, with the URL's password masked
    where a driver writes one: in a URL (``:pw@``) or a DSN (``password=pw``). Not every
    occurrence of it: a short password would turn the message's words into asterisks, and the
    pattern of asterisks would spell the password out."""
    text = " ".join(text.split())
    given = [found.group(1) or found.group(2) for found in _URL_PASSWORD.finditer(url)]
    for password in {*given, *map(urllib.parse.unquote, given), _password(url)}:
        if password:
            quoted = re.escape(password)
            text = re.sub(rf"(:){quoted}(@)", r"\1***\2", text)
            text = re.sub(rf"([?&]password=){quoted}(?=[&#\s]|$)", r"\1***", text, flags=re.I)
            text = re.sub(rf"(password\s*=\s*['\"]?){quoted}(?=['\"]?(\s|$|[,;)]))", r"\1***", text)
    return text


def dashboard_command(url: str) -> str:
    """How to browse the storage: where the URL came from $HPO_STORAGE the command names the
    variable, else its password is the placeholder PASSWORD (never printed)."""
    if mask_url(url) == url:
        return f"optuna-dashboard {url}"
    if os.environ.get(STORAGE_ENV) == url:
        return f'optuna-dashboard "${STORAGE_ENV}"'
    shown = shlex.quote(mask_url(url, PASSWORD_PLACEHOLDER))
    return f"optuna-dashboard {shown}  (with your password for {PASSWORD_PLACEHOLDER})"


def hpo_command(verb: str, *flags: str, study: str | None, storage: str) -> str:
    """``hpo VERB FLAGS`` on ``study`` (None: the default one) in ``storage``, as a hint to
    paste: ``--storage`` only where it is not the default ($HPO_STORAGE's, where set), its
    password as ``PASSWORD``, and the names quoted for a shell."""
    words = ["hpo", verb, *flags]
    if study is not None:
        words += ["--study", shlex.quote(study)]
    # As opened: a storage's URL names the driver hpo chose (with_driver), the variable may not.
    if with_driver(mask_url(storage)) != with_driver(mask_url(default_storage())):
        words += ["--storage", shlex.quote(mask_url(storage, PASSWORD_PLACEHOLDER))]
    return " ".join(words)


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite URL (None for other back-ends and in-memory SQLite); a
    query (``?timeout=30``) is SQLAlchemy's options, not part of the file's name."""
    match = re.match(r"sqlite:///([^?]*)(\?.*)?", url)
    if not match or match.group(1) in ("", ":memory:"):
        return None
    name, query = match.group(1), match.group(2) or ""
    # SQLite's URI form (sqlite:///file:hpo.db?mode=ro&uri=true), read-only access say.
    if name.startswith("file:") and re.search(r"[?&]uri=(true|1)\b", query, re.I):
        name = name.removeprefix("file:")
        if name in ("", ":memory:") or re.search(r"[?&]mode=memory\b", query, re.I):
            return None
    return Path(name)


def with_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads postgresql:// as psycopg 3 (what the postgres extra installs); where
    only psycopg2 is installed, a plain URL is pointed at it instead. postgres:// (Heroku's and
    libpq's spelling, which SQLAlchemy 2 calls an unknown database) is read as postgresql://."""
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        return url
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return f"postgresql+psycopg2://{rest}"
    return f"postgresql://{rest}"
