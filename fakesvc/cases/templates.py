"""A log message's template: its variable parts masked, so that the same kind of log counts as one series.

RCAEval's RE2 counts logs per Drain cluster. fakesvc's messages are few and
regular (a route's wording, then the evidence: a status, a duration, an
exception's text), so a fixed regex masking does the same job without
Drain's state or order dependence: every variable part becomes ``<*>``, in
this order (a later rule never sees what an earlier one masked):

1. a quoted value (``'...'`` or ``"..."``);
2. a URL (``scheme://...``);
3. a UUID, an IPv4 address (with its port), a ``host:port``;
4. a hex id of 8 or more hex digits holding at least one digit (trace and span ids);
5. a number, with its sign, decimals, exponent, and a unit glued to it (``300ms``, ``1.5e3``, ``-2``);

then a run of ``<*>`` joined by nothing or by ``.``, ``:``, ``-``, ``/`` or ``,``
becomes one ``<*>``, and whitespace is collapsed. The same message always gives
the same template; its id (:func:`template_id`) is a CRC-32 of the template, in
decimal, the same in every case and every run.
"""

from __future__ import annotations

import re
import zlib

WILDCARD = "<*>"
_MASKS = (
    re.compile(r"'[^']*'|\"[^\"]*\""),
    re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+"),
    re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"),
    re.compile(r"\b[a-zA-Z0-9.-]+:\d{2,5}\b"),
    re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b"),
    re.compile(r"(?<![\w<])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?[a-zA-Zµ%]*"),
)
_RUNS = re.compile(r"<\*>(?:[.:/,-]?<\*>)+")
_SPACES = re.compile(r"\s+")


def template(message: str) -> str:
    """``Payment failed: inventory-service answered <*> after <*>`` for ``... answered 503 after 12.5ms``."""
    masked = message
    for mask in _MASKS:
        masked = mask.sub(WILDCARD, masked)
    return _SPACES.sub(" ", _RUNS.sub(WILDCARD, masked)).strip()


def template_id(text: str) -> str:
    """The template's id: CRC-32 of its UTF-8 text, in decimal (RE2's ids are numbers too)."""
    return str(zlib.crc32(text.encode("utf-8")))
