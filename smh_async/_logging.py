"""structlog helpers.

The library never configures logging and never prints. :func:`library_logger` returns a
logger that uses the host's structlog pipeline when the host configured structlog (its
logger factory, wrapper class or processors: structlog's built-in defaults, which print to
stdout, count as not configured, as after ``capture_logs()`` in a host that never configured
it), and otherwise hands events to the standard ``logging`` logger ``smh_async`` (silent
unless the host enables it), with structlog's contextvars merged into the record's fields;
a field ``logging`` would refuse (``name``, ``module``, ``process``, ``message``, …) is
renamed ``ctx_<key>`` rather than break the caller. Only the CLI calls
:func:`configure_cli_logging`.

Secrets are never put into events in the first place; :class:`Redactor` is the CLI's second
line of defence: it masks secret-looking keys at any depth, ``access_token=`` style query
values in any string, and any known secret value wherever it appears.
"""

from __future__ import annotations

import json
import logging
import operator
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, TextIO, cast
from urllib.parse import quote

import structlog
import structlog._config as _structlog_config

from smh_async._clock import utc_now_us
from smh_async._console import SafeStream, colours_wanted
from smh_async._errors import scrub

__all__ = ["LOGGER_NAME", "Redactor", "configure_cli_logging", "library_logger"]

LOGGER_NAME = "smh_async"
REDACTED = "[REDACTED]"
LEARNED_MAX = 32  # learned values a Redactor keeps masking (a token and its quoted form
# count two: the latest 16 tokens; a run mints a few)
_SECRET_KEY = re.compile(r"(?i)(^|_)(access_?token|token|secret|password|authorization|signature)$")


def library_logger() -> Any:
    """The logger library code emits through (decided per call, so it follows the host).

    When the host turned on ``cache_logger_on_first_use``, the bound logger is reused until
    the host's structlog configuration changes (compared by identity, so ``configure()`` and
    ``capture_logs()`` take effect at once): binding a fresh one per event cost ~15 µs, about
    a tenth of a whole request on loopback (benchmarks/RESULTS.md).
    """
    global _cached
    if not structlog.is_configured():
        return _stdlib_logger
    config = structlog.get_config()
    if config["logger_factory"] is _BUILTIN_FACTORY and _builtin_defaults(config):
        return _stdlib_logger
    if not config["cache_logger_on_first_use"]:
        return structlog.get_logger(LOGGER_NAME)
    processors, wrapper = config["processors"], config["wrapper_class"]
    context, factory = config["context_class"], config["logger_factory"]
    cached = _cached
    if (
        cached is not None
        and cached[0] is processors
        and cached[1] is wrapper
        and cached[2] is context
        and cached[3] is factory
    ):
        return cached[4]
    logger = structlog.get_logger(LOGGER_NAME).bind()
    _cached = (processors, wrapper, context, factory, logger)
    return logger


# (processors, wrapper_class, context_class, logger_factory, bound logger)
_cached: tuple[Any, Any, Any, Any, Any] | None = None

# structlog's own defaults (print to stdout). ``is_configured()`` stays True once anything
# called ``configure()``, and ``structlog.testing.capture_logs()`` does, restoring the
# default processors on exit: a host that never configured structlog but used it once in a
# test would then see every library event printed. Private names, so looked up softly: if a
# structlog release drops them, nothing matches and ``is_configured()`` decides as before.
_NOT_FOUND = object()
_BUILTIN_FACTORY = getattr(_structlog_config, "_BUILTIN_DEFAULT_LOGGER_FACTORY", _NOT_FOUND)
_BUILTIN_WRAPPER = getattr(_structlog_config, "_BUILTIN_DEFAULT_WRAPPER_CLASS", _NOT_FOUND)
_BUILTIN_PROCESSORS = tuple(getattr(_structlog_config, "_BUILTIN_DEFAULT_PROCESSORS", ()))


def _builtin_defaults(config: Mapping[str, Any]) -> bool:
    """True when the wrapper and the processors are still structlog's built-in defaults (the
    caller checked the logger factory first): nobody chose where events go, so the library
    treats structlog as not configured. A host that set any of the three keeps its pipeline.

    Compared by identity: ``capture_logs()`` puts the very same processor objects back.
    """
    if config["wrapper_class"] is not _BUILTIN_WRAPPER:
        return False
    processors = config["processors"]
    if not isinstance(processors, list | tuple):  # any iterable is allowed: never consume it
        return False
    return len(processors) == len(_BUILTIN_PROCESSORS) and all(
        map(operator.is_, processors, _BUILTIN_PROCESSORS)
    )


# Without a handler of its own, a library logger's WARNING records reach logging's "last
# resort" handler and get printed to stderr when the host configured nothing. The stdlib's
# advice for libraries: attach a NullHandler (the host's handlers still see every record).
logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())

# A key ``logging`` cannot take in ``extra`` (a LogRecord attribute such as ``name``,
# ``module`` or ``process``, or ``message``/``asctime``) makes ``Logger.makeRecord`` raise
# KeyError inside the purge. Such a key, e.g. a host's ``bind_contextvars(name=...)``, is
# passed on under this prefix instead (``ctx_name``), again until the name is free.
_CLASH_PREFIX = "ctx_"
_MAKE_RECORD_REFUSES = frozenset({"message", "asctime"})
# render_to_log_kwargs passes these to logging as arguments, not as fields: the library's
# own events may, a host's context value may not (a string ``stacklevel`` breaks logging).
_LOG_ARGUMENTS = frozenset(structlog.stdlib.LOG_KWARG_NAMES)
# (record factory, keys an event must not use, keys the context must not use)
_reserved: tuple[Any, frozenset[str], frozenset[str]] | None = None


def _reserved_keys() -> tuple[frozenset[str], frozenset[str]]:
    """Keys refused in ``extra`` for the current record factory (a host's factory may add
    attributes): as (for the event's own keys, for context keys)."""
    global _reserved
    factory = logging.getLogRecordFactory()
    cached = _reserved
    if cached is not None and cached[0] is factory:
        return cached[1], cached[2]
    try:
        sample = factory(LOGGER_NAME, logging.INFO, __file__, 0, "", (), None)
        attributes = set(vars(sample))
    except Exception:  # a host factory that wants other arguments: the stock attributes
        attributes = set(vars(logging.LogRecord(LOGGER_NAME, logging.INFO, "", 0, "", (), None)))
    refused = attributes | _MAKE_RECORD_REFUSES
    for_event = frozenset(refused - _LOG_ARGUMENTS)
    for_context = frozenset(refused | _LOG_ARGUMENTS | {"event"})
    _reserved = (factory, for_event, for_context)
    return for_event, for_context


def _free_key(key: str, event: MutableMapping[str, Any], reserved: frozenset[str]) -> str:
    key = _CLASH_PREFIX + key
    while key in event or key in reserved:
        key = _CLASH_PREFIX + key
    return key


def _merge_context_for_stdlib(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``merge_contextvars`` for an event bound for ``extra``: keys that ``logging`` refuses
    there are renamed (:data:`_CLASH_PREFIX`), so logging never fails and the event keeps them.
    """
    for_event, for_context = _reserved_keys()
    clashing = [key for key in event if key in for_event]
    for key in clashing:
        value = event.pop(key)
        event[_free_key(key, event, for_event)] = value
    context = structlog.contextvars.get_contextvars()
    if not context:
        return event
    renamed: list[tuple[str, Any]] = []
    for key, value in context.items():
        if key in for_context:
            renamed.append((key, value))
        else:
            event.setdefault(key, value)  # the event's own value wins, as in merge_contextvars
    for key, value in renamed:
        event[_free_key(key, event, for_context)] = value
    return event


_stdlib_logger = structlog.wrap_logger(
    logging.getLogger(LOGGER_NAME),
    processors=[
        structlog.stdlib.filter_by_level,
        _merge_context_for_stdlib,
        structlog.stdlib.render_to_log_kwargs,
    ],
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)


def _forms(secret: str) -> list[str]:
    """A secret as the log may show it: verbatim and percent-encoded (as a URL holds it);
    forms under 4 characters would blank out ordinary words."""
    return [v for v in dict.fromkeys((secret, quote(secret, safe=""))) if len(v) >= 4]


class Redactor:
    """structlog processor that removes secrets from every event before rendering."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._known = {form for s in secrets if s for form in _forms(s)}
        self._learned: list[str] = []  # tokens minted during the run, the latest last
        self._secrets = sorted(self._known, key=len, reverse=True)
        self._secret_keys: dict[str, bool] = {}  # event keys repeat: match each name once

    def learn(self, secret: str) -> None:
        """Mask ``secret`` from now on (and its percent-encoded form): a token minted during
        the run. The latest :data:`LEARNED_MAX` are kept."""
        for value in _forms(secret):
            if value not in self._known and value not in self._learned:
                self._learned.append(value)
        del self._learned[:-LEARNED_MAX]
        self._secrets = sorted({*self._known, *self._learned}, key=len, reverse=True)

    def _is_secret_key(self, key: str) -> bool:
        known = self._secret_keys.get(key)
        if known is None:
            known = self._secret_keys[key] = bool(_SECRET_KEY.search(key))
        return known

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event.items():
            # Numbers and None pass as they are, text if scrubbing leaves it unchanged; the
            # event is rebuilt only when some value does change.
            kind = type(value)
            if value is None or kind is int or kind is float or kind is bool:
                continue
            if kind is str and not self._is_secret_key(key) and self.text(value) == value:
                continue
            return self._rebuilt(event)
        return event

    def _rebuilt(self, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key in list(event):
            event[key] = self._clean(key, event[key])
        return event

    def _clean(self, key: str, value: Any) -> Any:
        if value is None or type(value) in (int, float, bool):
            return value
        if self._is_secret_key(key):
            return REDACTED
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(key, v) for v in value]
        if isinstance(value, BaseException):
            return self.text(f"{type(value).__name__}: {value}")
        return value

    def text(self, text: str) -> str:
        """Scrub one string: known secret values, then credential-shaped query values."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return scrub(text, limit=1_000_000, lines=True)


def _json_fallback(obj: Any) -> Any:
    """For what JSON cannot hold: ``obj.__structlog__()`` if it has one, else ``repr(obj)``."""
    method = getattr(obj, "__structlog__", None)
    return method() if callable(method) else repr(obj)


_JSON = json.JSONEncoder(default=_json_fallback)


def _render_json(event: MutableMapping[str, Any], **_options: Any) -> str:
    """One event as JSON through a shared encoder (``json.dumps`` with options builds one
    per call, a measurable share of a log line)."""
    return _JSON.encode(event)


def add_timestamp(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``timestamp`` exactly as ``TimeStamper(fmt="iso", utc=True)`` writes it, in a third
    of the time (:mod:`smh_async._clock`)."""
    event["timestamp"] = utc_now_us()
    return event


def _level_number(level: str) -> int:
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number


def configure_cli_logging(
    *,
    fmt: str = "auto",
    level: str = "info",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> Redactor:
    """Configure structlog for the command line: JSON off a TTY, console on one.

    Called by the CLI only. Exceptions are rendered as text and scrubbed like everything else.
    Returns the redactor, to be told the tokens minted later (:meth:`Redactor.learn`).
    """
    out: TextIO | SafeStream = stream if stream is not None else SafeStream(sys.stderr)
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    redactor = Redactor(secrets)
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_render_json)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=colours_wanted(out))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.format_exc_info,
            redactor,
            # Added after redaction: a level name and our own clock hold no secrets.
            structlog.processors.add_log_level,
            add_timestamp,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_level_number(level)),
        logger_factory=structlog.WriteLoggerFactory(file=cast("TextIO", out)),
        cache_logger_on_first_use=True,
    )
    # Third-party wire logging can expose URLs (and so the token): keep it quiet.
    for noisy in ("aiohttp", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return redactor
