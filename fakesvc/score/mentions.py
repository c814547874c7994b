"""The fakesvc services a free-text root cause names, in the order it first names them.

A service is named by its exact name or a plain-English form of it, as whole
words, in any case: ``payment-service``, ``payment service``,
``payment_service``, ``payment``; ``inventory-service`` ... ``inventory``;
``api-gateway``, ``api gateway``, ``api_gateway``, ``gateway``. The short form
is the name's distinctive word (``-service`` dropped; of two words left, the
last). Words that merely contain a form (``payments``, ``gateways``) do not count.
"""

from __future__ import annotations

import re

from fakesvc import SERVICE_NAMES

GENERIC = "service"


def _short(service: str) -> str:
    words = [word for word in service.split("-") if word != GENERIC]
    return words[-1] if words else service


def _pattern(service: str) -> str:
    """One alternation for ``service``: the whole name (any separator) first, then its short form."""
    whole = r"[-_\s]+".join(re.escape(word) for word in service.split("-"))
    return rf"(?:{whole}|{re.escape(_short(service))})"


def _mentions() -> re.Pattern[str]:
    """One regex, one named group per service: ``s0`` for ``SERVICE_NAMES[0]``, and so on."""
    groups = "|".join(f"(?P<s{index}>{_pattern(service)})" for index, service in enumerate(SERVICE_NAMES))
    return re.compile(rf"\b(?:{groups})\b", re.IGNORECASE)


_MENTIONS = _mentions()


def ranked_services(text: str) -> list[str]:
    """The services ``text`` names, first mention first, each once."""
    ranked: dict[str, None] = {}
    for match in _MENTIONS.finditer(text):
        assert match.lastgroup is not None  # every alternative is a named group
        ranked.setdefault(SERVICE_NAMES[int(match.lastgroup[1:])], None)
    return list(ranked)
