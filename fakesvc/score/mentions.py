"""The services of a graph that a free-text root cause names, in the order it first names them.

A service is named by its exact name or a plain-English form of it, as whole
words, in any case: ``payment-service``, ``payment service``,
``payment_service``, ``payment``; ``api-gateway``, ``api gateway``,
``api_gateway``, ``gateway``; ``cartservice``, ``cart service``, ``cart``.
The short form is the name's distinctive word: the name less its ``service``
suffix (``-service`` or glued on), else its last word; a word another service
holds more firmly is passed over for the word before it (``redis-cart``:
``cart`` is cartservice's, so ``redis``). Where two forms start at one place,
the longer wins (``redis cart`` is redis-cart, not cartservice). Words that
merely contain a form (``payments``, ``gateways``) do not count.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from fakesvc.analyse.graphs import default_graph

GENERIC = "service"
_SEPARATOR = r"[-_\s]+"
_GLUE = r"[-_\s]*"


def _words(service: str) -> list[str]:
    """The name's words, a glued ``service`` suffix split off: ``cartservice`` -> ``cart``, ``service``."""
    words = service.split("-")
    last = words[-1]
    if last != GENERIC and last.endswith(GENERIC):
        words[-1:] = [last.removesuffix(GENERIC), GENERIC]
    return words


def _candidates(service: str) -> list[tuple[int, str]]:
    """``(firmness, form)`` of the short forms, best first: 0 the name less its suffix, then words from the end."""
    words = _words(service)
    if words[-1] == GENERIC and len(words) > 1:
        stem = [word for word in words if word != GENERIC]
        return [(0, stem[-1])] if stem else []
    return [(firmness, word) for firmness, word in enumerate(reversed(words), 1) if len(words) > 1]


def _short_forms(services: Sequence[str]) -> dict[str, str]:
    """Each service's short form: its first candidate that no other service holds as firmly, nor as its name."""
    holders: dict[str, list[tuple[int, str]]] = {service: [(-1, service)] for service in services}
    for service in services:
        for firmness, form in _candidates(service):
            holders.setdefault(form, []).append((firmness, service))
    short = {}
    for service in services:
        for firmness, form in _candidates(service):
            if all(other == service or other_firmness > firmness for other_firmness, other in holders[form]):
                short[service] = form
                break
    return short


def _whole(service: str) -> str:
    """The whole name as a regex: any separator between its words, or none before a glued suffix."""
    parts = service.split("-")
    pattern = _SEPARATOR.join(re.escape(part) for part in parts)
    if len(_words(service)) > len(parts):  # "cartservice" is also "cart service"
        pattern = pattern.removesuffix(GENERIC) + _GLUE + GENERIC
    return pattern


@functools.lru_cache(maxsize=8)
def _matcher(services: tuple[str, ...]) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """One regex, one group per form (longest first, so the longer of two forms at one place wins), and whose."""
    short = _short_forms(services)
    forms = [(service, _whole(service)) for service in services]
    forms += [(service, re.escape(form)) for service, form in short.items()]
    forms.sort(key=lambda item: len(item[1]), reverse=True)
    groups = "|".join(f"(?P<f{index}>{form})" for index, (_, form) in enumerate(forms))
    return re.compile(rf"\b(?:{groups})\b", re.IGNORECASE), tuple(service for service, _ in forms)


def ranked_services(text: str, services: Sequence[str] | None = None) -> list[str]:
    """The ``services`` (default: the default graph's) ``text`` names, first mention first, each once."""
    pattern, owners = _matcher(tuple(default_graph().names if services is None else services))
    ranked: dict[str, None] = {}
    for match in pattern.finditer(text):
        assert match.lastgroup is not None  # every alternative is a named group
        ranked.setdefault(owners[int(match.lastgroup[1:])], None)
    return list(ranked)
