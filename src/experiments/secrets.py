"""API keys: read from the environment only, checked before any work, and kept out of every file and record.

Keys never come from the config or the command line (Hydra would copy them into ``.hydra/``, the sweep folder
names and the tracked params): ``refuse_secret_overrides`` refuses, before Hydra writes anything, an override
whose key looks secret (``api_key``, ``openai_key``, ``hf_auth``...), whose value looks like a key or is one of
the environment's secrets, carries credentials inside a URL, or pulls a secret in with ``${oc.env:...}``. A
component that needs a key calls ``require_key`` in its ``__init__``, so a missing key stops the run before any
data is read, any model loaded or any run recorded.

What is written or printed anyway goes through ``redact``: the values of every secret-looking environment
variable and the credentials inside URLs (``http://user:pass@host``) become ``***``. ``guard_output`` applies it
to the console and to every log record (``run.log`` included, tracebacks too), for the process (the command line)
or for one call (``redacted``: the Python API, whose exceptions are redacted too); ``scrub`` applies it, and the
key-name and key-shape filters, to the config and everything handed to a tracker; ``redact_folder`` rewrites
Hydra's ``.hydra/`` files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from experiments.errors import ConfigError, UserError

COHERE_KEYS = ("CO_API_KEY", "COHERE_API_KEY")
BRAINTRUST_KEYS = ("BRAINTRUST_API_KEY",)

#: Names that hold secrets: ``*api_key``, ``*_key`` (``openai_key``), ``*token``, ``*password``, ``*passphrase``,
#: ``*_pw`` / ``*_pass`` (``db_pw``), ``*auth`` (``hf_auth``), ``*credential(s)``, ``*_pem``, anything with
#: ``secret`` or ``private_key``. Anchored at the end so that ``max_tokens_per_doc``, ``TOKENIZERS_PARALLELISM``,
#: ``SSH_AUTH_SOCK`` or the shell's ``PWD`` are not taken for secrets.
SECRET_NAME = re.compile(
    r"(api[_-]?key|_key|token|password|passwd|passphrase|auth|credentials?|_pw|_pass|_pem)$|^(key|pw|pass)$"
    r"|secret|private[_-]?key",
    re.IGNORECASE,
)
REDACTED = "***"
#: Shorter values (``1``, ``true``) are flags, not secrets; redacting them would mangle ordinary text.
MIN_SECRET_LENGTH = 8
#: The user-info part of a URL (``http://user:pass@host``): credentials, whatever the variable is called.
#: Linear time on any text: the scheme is matched only from the start of a run of scheme characters (the
#: look-behind) and possessively, so a long run of letters is scanned once, not once per starting position.
URL_CREDENTIALS = re.compile(r"(?<![A-Za-z0-9+.\-])([A-Za-z0-9+.\-]++://)([^/\s@?#]++)@")
URL_CREDENTIALS_BYTES = re.compile(URL_CREDENTIALS.pattern.encode())
#: Prefixes of the keys of common services (OpenAI, Stripe-style, GitHub, GitLab, Hugging Face, Slack, AWS, Google).
KEY_PREFIXES: tuple[str, ...] = ("sk-", "sk_", "pk_", "rk_", "ghp_", "gho_", "ghu_", "ghs_", "github_pat_", "glpat-")
KEY_PREFIXES += ("hf_", "xox", "AKIA", "AIza")
KEY_TOKEN = re.compile(r"[A-Za-z0-9_\-]{20,}")
_DIGIT, _UPPER, _LOWER, _LONG_PART = (re.compile(p) for p in (r"\d", "[A-Z]", "[a-z]", r"[^\-_]{20}"))
#: A word that may name an environment variable inside an interpolation (quoted or not: ``${oc.env:"NAME"}``).
NAME_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def normalised(value: str) -> str:
    """The one form of a key that is both sent to a service and redacted: surrounding whitespace (the trailing
    space or CR of a key read from a CRLF ``.env`` file) removed."""
    return value.strip()


def env_key(names: Sequence[str]) -> str | None:
    """The first of ``names`` set (non-empty) in the environment, ``normalised``."""
    for name in names:
        value = normalised(os.environ.get(name, ""))
        if value:
            return value
    return None


def require_key(names: Sequence[str], needed_by: str) -> str:
    """The key from the environment, or a ``ConfigError`` naming the variable to export."""
    value = env_key(names)
    if value is None:
        alternatives = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""
        raise ConfigError(
            f"{needed_by} needs an API key: export {names[0]}=<your key>{alternatives}; "
            "keys are read from the environment only."
        )
    return value


def secret_values() -> list[str]:
    """Values of every environment variable whose name looks secret, and the passwords inside any environment
    variable holding a URL with credentials (``MLFLOW_TRACKING_URI=http://user:pass@host``), longest first."""
    values = {normalised(value) for name, value in os.environ.items() if SECRET_NAME.search(name)}
    for value in os.environ.values():
        for match in URL_CREDENTIALS.finditer(value):
            values.add(normalised(match.group(2).partition(":")[2]))
    return sorted((value for value in values if len(value) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def looks_like_key(token: str) -> bool:
    """Whether a word looks like an API key: a known service prefix, or 32+ random-looking characters.

    Digests and ids (lowercase hex), model names (``ms-marco-MiniLM-L6-v2``) and paths do not match.
    """
    # Only C-speed searches: a multi-megabyte word costs one linear pass each, never a Python loop per character.
    if len(token) >= 20 and token.startswith(KEY_PREFIXES) and _DIGIT.search(token):
        return True
    if len(token) < 32 or not _LONG_PART.search(token):
        return False
    return bool(_UPPER.search(token) and _LOWER.search(token) and _DIGIT.search(token))


def redact(text: str) -> str:
    """``text`` with every secret value from the environment, and credentials inside URLs, replaced by ``***``."""
    for value in secret_values():
        text = text.replace(value, REDACTED)
    return URL_CREDENTIALS.sub(rf"\1{REDACTED}@", text) if "://" in text and "@" in text else text


def redact_bytes(data: bytes) -> bytes:
    for value in secret_values():
        data = data.replace(value.encode("utf-8"), REDACTED.encode("utf-8"))
    return URL_CREDENTIALS_BYTES.sub(rf"\1{REDACTED}@".encode(), data) if b"://" in data and b"@" in data else data


def redact_keys(text: str) -> str:
    """``redact``, and every word that looks like a key (``looks_like_key``) replaced by ``***`` too."""
    return KEY_TOKEN.sub(lambda match: REDACTED if looks_like_key(match.group()) else match.group(), redact(text))


def redact_folder(folder: Path) -> None:
    """Rewrite, in place, every file under ``folder`` that holds a secret value (Hydra's ``.hydra/`` files)."""
    if not folder.is_dir():
        return
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            cleaned = redact_bytes(data)
            if cleaned != data:
                path.write_bytes(cleaned)


def scrub(value: Any) -> Any:
    """A copy of a nested config: secret-looking keys' values become ``***``, secret values in strings too."""
    if isinstance(value, Mapping):
        return {
            key: (REDACTED if SECRET_NAME.search(str(key)) and item is not None else scrub(item))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    if isinstance(value, str):
        return redact_keys(value)
    return value


def secret_paths(config: Any, prefix: str = "") -> list[str]:
    """Dotted keys of a config that look secret and hold a value (keys belong in the environment)."""
    found: list[str] = []
    if isinstance(config, Mapping):
        for key, item in config.items():
            name = f"{prefix}{key}"
            if SECRET_NAME.search(str(key)) and item is not None:
                found.append(name)
            else:
                found.extend(secret_paths(item, f"{name}."))
    return found


def _schemeless_credentials(value: str) -> bool:
    """Whether ``value`` holds ``user:password@host`` without a scheme (``alice:s3cret@db.example.com``)."""
    for word in re.split(r"[\s,;'\"]+", value):
        userinfo, at, host = word.rpartition("@")
        user, colon, password = userinfo.rpartition("/")[2].partition(":")
        if at and colon and user and password and host[:1].isalnum():
            return True
    return False


def _is_secret_variable(name: str) -> bool:
    value = os.environ.get(name)
    return value is not None and (SECRET_NAME.search(name) is not None or redact_keys(value) != value)


def resolve_interpolations(value: str) -> str | None:
    """``value`` with its interpolations resolved on their own (``${oc.env:"NAME"}``, nested ones too), or None
    when it refers to something only the full config or Hydra knows (``${paths.outputs_dir}``, ``${now:...}``)."""
    if "${" not in value:
        return value
    from omegaconf import OmegaConf

    try:
        resolved = OmegaConf.create({"value": value}).value
    except Exception:  # any grammar or lookup error: the caller falls back to reading the names
        return None
    return None if resolved is None else str(resolved)


#: The resolvers that read the environment, directly or by resolving a string as an interpolation.
ENV_READERS = frozenset({"oc.env", "oc.decode"})
#: A reader of the environment whose argument holds an interpolation: the fallback when a value does not parse.
COMPUTED_READ = re.compile(r"\$\{\s*oc\.(env|decode)\s*:[^}]*\$\{")


def computed_env_read(value: str) -> bool:
    """Whether ``value`` reads an environment variable whose name is computed: ``${oc.env:CO_${sfx}}`` (quoted or
    not), or ``oc.decode`` of a computed string. Such a name cannot be checked before the config is composed."""
    from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser as Grammar
    from omegaconf.grammar_parser import parse

    try:
        tree = parse(value)
    except Exception:  # not valid interpolation grammar: OmegaConf will refuse it; judge the text
        return COMPUTED_READ.search(value) is not None

    def computed(node: Any) -> bool:
        children = list(node.getChildren()) if hasattr(node, "getChildren") else []
        return isinstance(node, Grammar.InterpolationContext) or any(computed(child) for child in children)

    def reads(node: Any) -> bool:
        if isinstance(node, Grammar.InterpolationResolverContext) and node.resolverName().getText() in ENV_READERS:
            arguments = node.sequence()
            name = arguments.element(0) if arguments is not None else None
            if name is not None and computed(name):
                return True
        return any(reads(child) for child in (node.getChildren() if hasattr(node, "getChildren") else []))

    return reads(tree)


def secret_in_value(value: str) -> str | None:
    """Why a config or command-line value carries a secret, or None when it does not.

    Interpolations are judged by what they resolve to, whatever their quoting, and any environment variable
    holding a secret that an interpolation names is refused even when the value cannot be resolved on its own;
    so is a variable whose name is itself an interpolation (``${oc.env:CO_${sfx}}``), which only the composed
    config could tell.
    """
    if "${" in value:
        for name in NAME_WORD.findall(value):
            if _is_secret_variable(name):
                return f"it pulls the secret {name} into the config"
        if computed_env_read(value):
            return "it reads an environment variable whose name is computed (it may be a key); write the name itself"
        resolved = resolve_interpolations(value)
        if resolved is not None and resolved != value and secret_in_value(resolved) is not None:
            return "it pulls a secret into the config through an interpolation"
    if URL_CREDENTIALS.search(value) or _schemeless_credentials(value):
        return "it holds credentials inside a URL"
    if redact(value) != value or any(looks_like_key(token) for token in KEY_TOKEN.findall(value)):
        return "its value looks like an API key"
    return None


def _refuse(where: str, why: str) -> None:
    raise UserError(
        f"{where}: {why}; API keys are never taken from the config or the command line (they would be saved "
        "with the run): export the key in the environment instead (e.g. CO_API_KEY, MLFLOW_TRACKING_PASSWORD)."
    )


def _secret_values_in(config: Any, prefix: str = "") -> tuple[str, str] | None:
    """The first ``(dotted key, why)`` of a config value that carries a secret (``secret_in_value``)."""
    items = config.items() if isinstance(config, Mapping) else enumerate(config) if isinstance(config, list) else ()
    for key, item in items:
        found = _secret_values_in(item, f"{prefix}{key}.")
        if found:
            return found
    why = secret_in_value(config) if isinstance(config, str) else None
    return (prefix.rstrip("."), why) if why else None


def refuse_secret_options(config: Any) -> None:
    """Raise a ``UserError`` when the config (or the command line) carries a key, by name or by value."""
    names = secret_paths(config)
    if names:
        _refuse(names[0], "its name says it is a secret")
    found = _secret_values_in(config)
    if found:
        _refuse(*found)


def refuse_resolved_secrets(config: Any, prefix: str = "") -> None:
    """Raise a ``UserError`` when a resolved config value holds a secret value of the environment, however the
    interpolation that produced it was spelled (the check of what was typed cannot see every spelling)."""
    items = config.items() if isinstance(config, Mapping) else enumerate(config) if isinstance(config, list) else ()
    for key, item in items:
        refuse_resolved_secrets(item, f"{prefix}{key}.")
    if isinstance(config, str) and redact(config) != config:
        _refuse(prefix.rstrip("."), "it resolves to a secret from the environment")


def refuse_secret_overrides(arguments: Sequence[str]) -> None:
    """The command-line form of ``refuse_secret_options``: checked before Hydra records the overrides."""
    for argument in arguments:
        key, has_value, value = argument.partition("=")
        key = key.lstrip("+~")
        if not has_value:
            continue
        if SECRET_NAME.search(key.rsplit(".", 1)[-1]):
            _refuse(key, "its name says it is a secret")
        why = secret_in_value(value)
        if why:
            _refuse(key, why)


class RedactingFilter(logging.Filter):
    """A handler filter that replaces secret values in every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def redact_logs() -> None:
    """Attach a ``RedactingFilter`` to every handler of the root logger (Hydra's console and ``run.log``)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
            handler.addFilter(RedactingFilter())


class RedactingStream:
    """A text stream that writes through ``redact`` (the console: prints, tracebacks, MLflow's messages)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _redacting_records(make_record: Any) -> Any:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it itself
            return record
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return record

    factory.redacting = True  # type: ignore[attr-defined]
    return factory


def redact_error(error: BaseException) -> BaseException:
    """``error`` with secret values redacted from its message and from the errors it was raised from or during.

    In place where the message is the error's arguments or its ``message`` attribute (its type, traceback and what
    catches it stay); an error of the chain whose message still holds a secret (a library's error formatting a
    response body it keeps elsewhere) is cut from the chain, and one at the top is replaced by an error of its type
    (else a ``UserError``) carrying the redacted message.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        _redact_in_place(current)
        below = current.__cause__ or current.__context__
        if below is not None:
            _redact_in_place(below)
            if redact(str(below)) != str(below):  # its message is made of what it keeps elsewhere
                current.__cause__, current.__context__, current.__suppress_context__ = None, None, True
                below = None
        current = below
    text = str(error)
    if redact(text) == text:
        return error
    try:
        clean = type(error)(redact(text))
    except Exception:
        clean = UserError(redact(text))
    return clean if str(clean) == redact(text) else UserError(redact(text))


def _redact_in_place(error: BaseException) -> None:
    """Redact ``error``'s arguments and its ``message``-like attributes."""
    error.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in error.args)
    for name in ("message", "msg", "strerror"):
        text = getattr(error, name, None)
        if isinstance(text, str):
            with contextlib.suppress(AttributeError, TypeError):
                setattr(error, name, redact(text))


@contextmanager
def redacted() -> Iterator[None]:
    """For one call of the Python API, what the command line does for its whole process (``guard_output``):
    everything printed or logged meanwhile is redacted, and so is an exception that leaves (a notebook shows it and
    saves it with the cell's output). The caller's streams and log record factory are restored afterwards."""
    stdout, stderr, factory = sys.stdout, sys.stderr, logging.getLogRecordFactory()
    guard_output()
    try:
        yield
    except BaseException as error:
        clean = redact_error(error)
        if clean is error:
            raise  # the same object: its type and traceback stay
        raise clean from None
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        logging.setLogRecordFactory(factory)


def guard_output() -> None:
    """Redact secrets from everything the process prints or logs, from here on (called first by ``run.py``).

    The console streams are wrapped, and every log record (Hydra's ``#0 : ...`` launch lines, "Error executing
    job" tracebacks, ``run.log``) is redacted when it is created, whichever handler writes it.
    """
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
    current = logging.getLogRecordFactory()
    if not getattr(current, "redacting", False):
        logging.setLogRecordFactory(_redacting_records(current))
