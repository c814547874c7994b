"""The ground truth replays any service graph: hops, fallbacks, parallel calls, shared dependencies.

The graphs are built by hand from the model (the ``mini`` shop of the issue,
and variants), plus seeded random DAGs for invariants that hold on any graph.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from fakesvc.graph.load import load_graph
from fakesvc.graph.model import (
    ENTRY_HOP,
    Call,
    Failure,
    Graph,
    Log,
    Parallel,
    Route,
    Service,
    Sleep,
    Span,
    Step,
    calls_of,
    child_hop,
)
from fakesvc.traffic.truth import Timeouts, Verdict, judge

HEALTHY = Verdict(200, None, ())


class Calls:
    """Numbers a route's calls in document order, as the loader does."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(
        self,
        service: str,
        timeout_s: float,
        on_error: str = "fail",
        errors: Mapping[str, Failure] | None = None,
    ) -> Call:
        path = f"/{service}/{{key}}"
        call = Call(service, path, "POST", path, timeout_s, on_error, dict(errors or {}), self.count)  # type: ignore[arg-type]
        self.count += 1
        return call


def service(name: str, *script: Step, path: str | None = None, entry: bool = False) -> Service:
    return Service(name, (Route(path or f"/{name}/{{key}}", "POST", tuple(script), entry=entry),))


def graph(*services: Service) -> Graph:
    return Graph("test", services)


def fault(service: str, kind: str, hop: str | None = None, **fields: Any) -> dict[str, Any]:
    """A structured fault record (``hop=None``: one of an old truth file, without the field)."""
    record = {"service": service, "kind": kind, "detail": "", "status": None, "delay_ms": None, **fields}
    return record if hop is None else {**record, "hop": hop}


def error(service: str, hop: str | None = None, status: int = 503) -> dict[str, Any]:
    return fault(service, "error", hop, status=status)


def latency(service: str, hop: str | None, delay_ms: float) -> dict[str, Any]:
    return fault(service, "latency", hop, delay_ms=delay_ms)


def mini(stock_errors: Mapping[str, Failure] | None = None, ads_on_error: str = "ignore", db: bool = False) -> Graph:
    """The issue's shop: POST /buy calls pricing (1 s), then stock (1 s) and ads (0.3 s, a fallback) at once.

    With ``db``, stock and ads both call one database (0.8 s each): hops 0.1.0 and 0.2.0.
    """
    call = Calls()
    edge = service(
        "shop",
        Log("info", "Buy initiated"),
        call("pricing", 1.0),
        Parallel((call("stock", 1.0, errors=stock_errors), Span("ads", {}, (call("ads", 0.3, ads_on_error),)))),
        path="/buy/{order_id}",
        entry=True,
    )
    below = [service("pricing", Sleep(5, 10))]
    below += [service(name, *([Calls()("db", 0.8)] if db else [])) for name in ("stock", "ads")]
    return graph(edge, *below, *([service("db")] if db else []))


def test_a_failed_fallback_leaves_the_checkout_healthy() -> None:
    shop = mini()
    assert judge([error("ads", "0.2")], graph=shop) == HEALTHY
    assert judge([latency("ads", "0.2", 500)], graph=shop) == HEALTHY  # past its 0.3 s: gave up on it, went on
    assert judge([latency("ads", "0.2", 5000)], Timeouts(checkout_s=1.0), shop) == HEALTHY  # waited 0.3 s only
    assert judge([fault("ads", "drop", "0.2")], graph=shop) == HEALTHY
    # a fallback that answered in time did slow the checkout
    assert judge([latency("ads", "0.2", 100)], graph=shop) == (200, "ads", ("ads",))
    # an absorbed fault is no cause, and does not hide the one that counts
    assert judge([error("ads", "0.2"), latency("pricing", "0.0", 10)], graph=shop) == (200, "pricing", ("pricing",))


def test_a_failed_fallback_that_made_someone_give_up_is_blamed() -> None:
    slow_ads = latency("ads", "0.2", 500)  # waited for 0.3 s: more than the generator's patience
    assert judge([slow_ads], Timeouts(checkout_s=0.2), mini()) == (None, "ads", ("ads",))
    call = Calls()
    nested = graph(
        service("edge", call("front", 0.5), entry=True),
        service("front", Calls()("extra", 2.0, "ignore")),  # a fallback that waits longer than front's caller
        service("extra"),
    )
    assert judge([latency("extra", "0.0.0", 1000)], graph=nested) == (504, "extra", ("extra",))
    assert judge([error("extra", "0.0.0")], graph=nested) == HEALTHY


def test_a_parallel_branch_error_fails_the_hop_and_is_blamed() -> None:
    shop = mini()
    assert judge([error("stock", "0.1")], graph=shop) == (502, "stock", ("stock",))
    assert judge([fault("stock", "drop", "0.1")], graph=shop) == (502, "stock", ("stock",))
    assert judge([error("pricing", "0.0")], graph=shop) == (502, "pricing", ("pricing",))
    # the block lasts as long as its slowest branch (not their sum), failed or not
    both_slow = [latency("stock", "0.1", 600), latency("ads", "0.2", 200)]
    assert judge(both_slow, Timeouts(checkout_s=0.7), shop) == (200, "stock", ("stock", "ads"))
    stock_fails_first = [error("stock", "0.1"), latency("ads", "0.2", 250)]
    assert judge(stock_fails_first, Timeouts(checkout_s=0.2), shop) == (None, "ads", ("ads", "stock"))


def test_when_two_branches_fail_the_first_in_document_order_decides() -> None:
    shop = mini(stock_errors={"any": Failure(503)}, ads_on_error="fail")
    both = [latency("stock", "0.1", 500), error("stock", "0.1"), error("ads", "0.2")]  # ads failed first in time
    assert judge(both, graph=shop) == (503, "stock", ("stock", "ads"))
    assert judge([error("ads", "0.2")], graph=shop) == (502, "ads", ("ads",))


def test_a_shared_dependency_fails_only_the_path_whose_hop_got_the_fault() -> None:
    shop = mini(db=True)
    assert judge([error("db", "0.1.0")], graph=shop) == (502, "db", ("db",))  # through stock
    assert judge([error("db", "0.2.0")], graph=shop) == HEALTHY  # through the ads fallback
    slow_db_for_ads = latency("db", "0.2.0", 900)  # past ads' 0.3 s, within stock's: only the fallback gave up
    assert judge([slow_db_for_ads], graph=shop) == HEALTHY
    assert judge([latency("db", "0.1.0", 700)], graph=shop) == (200, "db", ("db",))  # within stock's 0.8 s
    assert judge([error("db", "0.9")], graph=shop) == HEALTHY  # a hop this graph has not: never injected


def test_records_without_a_hop_belong_to_every_hop_of_their_service() -> None:
    shop = mini(db=True)
    assert judge([error("stock")], graph=shop) == (502, "stock", ("stock",))  # stock has one hop: 0.1
    assert judge([error("ads")], graph=shop) == HEALTHY
    assert judge([error("db")], graph=shop) == (502, "db", ("db",))  # at 0.1.0 and 0.2.0: stock's path fails
    assert judge([latency("db", None, 100)], graph=shop) == (200, "db", ("db",))
    call = Calls()
    optional_first = graph(
        service("edge", call("a", 1.0, "ignore"), call("b", 1.0), entry=True),
        *(service(name, Calls()("db", 0.5)) for name in ("a", "b")),
        service("db"),
    )
    assert judge([error("db")], graph=optional_first) == (502, "db", ("db",))  # at 0.0.0, absorbed, and at 0.1.0


def test_a_timeout_blames_the_slowest_service_below_the_caller_that_gave_up() -> None:
    shop = mini(db=True)
    pricing = latency("pricing", "0.0", 900)  # the slowest of all, but within its own timeout: not below stock
    stock_slower = [pricing, latency("stock", "0.1", 600), latency("db", "0.1.0", 450)]
    assert judge(stock_slower, graph=shop) == (504, "stock", ("stock", "db", "pricing"))
    db_slower = [pricing, latency("stock", "0.1", 450), latency("db", "0.1.0", 600)]
    assert judge(db_slower, graph=shop) == (504, "db", ("db", "pricing", "stock"))  # depth, then file order
    tied = [latency("stock", "0.1", 525), latency("db", "0.1.0", 525)]
    assert judge(tied, graph=shop)[:2] == (504, "db")  # ties: the most downstream


def test_a_call_s_errors_mapping_sets_the_hop_s_answer() -> None:
    slow_stock = latency("stock", "0.1", 1500)
    assert judge([slow_stock], graph=mini()).expected_status == 504  # unmapped: a timeout answers 504
    assert judge([error("stock", "0.1")], graph=mini()).expected_status == 502  # the rest 502
    any_500 = mini(stock_errors={"any": Failure(500)})
    assert judge([slow_stock], graph=any_500).expected_status == 500
    assert judge([error("stock", "0.1")], graph=any_500).expected_status == 500
    split = mini(stock_errors={"timeout": Failure(503), "any": Failure(500)})
    assert judge([slow_stock], graph=split) == (503, "stock", ("stock",))
    assert judge([fault("stock", "drop", "0.1")], graph=split).expected_status == 500


def test_the_generator_s_timeout_and_an_edge_drop_are_no_answer() -> None:
    shop = mini()
    slow_pricing = latency("pricing", "0.0", 900)
    assert judge([slow_pricing], Timeouts(checkout_s=0.5), shop) == (None, "pricing", ("pricing",))
    assert judge([slow_pricing], Timeouts(checkout_s=1.0), shop) == (200, "pricing", ("pricing",))
    assert judge([fault("shop", "drop", ENTRY_HOP)], graph=shop) == (None, "shop", ("shop",))
    assert judge([error("shop", ENTRY_HOP, 429)], graph=shop) == (429, "shop", ("shop",))


def test_noise_is_harmless_at_any_hop() -> None:
    shop = mini(db=True)
    noise = [fault(name, "noise", hop) for hop, name in hops(shop)]
    assert judge(noise, graph=shop) == HEALTHY
    assert judge([*noise, error("stock", "0.1")], graph=shop) == (502, "stock", ("stock",))


def test_an_entry_route_is_chosen_by_route_or_by_name() -> None:
    call = Calls()
    browse = Route("/browse/{order_id}", "GET", (call("ads", 0.3),), entry=True)
    shop = mini()
    edge = shop.services[0]
    shop = graph(Service(edge.name, (*edge.routes, browse)), *shop.services[1:])
    ads_down = [error("ads", "0.0")]  # the first call of whichever entry route
    assert judge(ads_down, graph=shop) == HEALTHY  # the first entry route: pricing answers
    assert judge(ads_down, graph=shop, entry="GET /browse/{order_id}") == (502, "ads", ("ads",))
    assert judge(ads_down, graph=shop, entry=browse) == (502, "ads", ("ads",))


CHECKOUT_FAULTS = [
    [],
    [error("inventory-service")],
    [latency("payment-service", None, 900), error("inventory-service")],
    [latency("payment-service", None, 1500)],
    [latency("inventory-service", None, 2500)],
    [latency("payment-service", None, 4000), latency("inventory-service", None, 1500)],
    [fault("api-gateway", "drop")],
    [latency("api-gateway", ENTRY_HOP, 50), fault("payment-service", "drop", "0.0")],
]


@pytest.mark.parametrize("faults", CHECKOUT_FAULTS)
@pytest.mark.parametrize("timeouts", [Timeouts(), Timeouts(inventory_s=3.0), Timeouts(1.0, 2.0, 4.0)])
def test_the_default_graph_is_the_checkout_with_the_given_timeouts(
    faults: list[dict[str, Any]], timeouts: Timeouts
) -> None:
    loaded = load_graph(
        "checkout", {"inventory_timeout_s": timeouts.inventory_s, "payment_timeout_s": timeouts.payment_s}
    )
    assert judge(faults, timeouts) == judge(faults, Timeouts(checkout_s=timeouts.checkout_s), loaded)


def hops(shop: Graph) -> Iterator[tuple[str, str]]:
    """(hop, service) of every request of a checkout through the first entry route, in document order."""

    def walk(hop: str, name: str, route: Route) -> Iterator[tuple[str, str]]:
        yield hop, name
        for call in calls_of(route.script):
            callee = shop.service(call.service)
            yield from walk(child_hop(hop, call), callee.name, callee.route(call.route))

    edge, route = shop.entry_routes()[0]
    yield from walk(ENTRY_HOP, edge.name, route)


def absorbed_hops(shop: Graph) -> set[str]:
    """The hops below a fallback call: their failure is never the checkout's."""

    def walk(hop: str, route: Route, below_fallback: bool) -> Iterator[str]:
        if below_fallback:
            yield hop
        for call in calls_of(route.script):
            callee = shop.service(call.service).route(call.route)
            yield from walk(child_hop(hop, call), callee, below_fallback or call.on_error == "ignore")

    return set(walk(ENTRY_HOP, shop.entry_routes()[0][1], False))


def random_graph(seed: int) -> Graph:
    """6-12 services, each but the edge called by an earlier one (so acyclic), in random blocks and fallbacks."""
    rng = random.Random(seed)
    count = rng.randint(6, 12)
    names = [f"svc{index}" for index in range(count)]
    callees: list[set[int]] = [set() for _ in names]
    for index in range(1, count):
        callees[rng.randrange(index)].add(index)
    for index in range(count - 1):
        if len(callees[index]) < 3 and rng.random() < 0.4:
            callees[index].add(rng.randrange(index + 1, count))
    services = [service(names[i], *random_script(rng, [names[j] for j in sorted(callees[i])])) for i in range(count)]
    edge = services[0]
    return graph(
        Service(edge.name, (Route(edge.routes[0].path, "POST", edge.routes[0].script, entry=True),)), *services[1:]
    )


def random_script(rng: random.Random, callees: list[str]) -> list[Step]:
    """The calls to ``callees``: one by one or in parallel blocks, some in spans, some fallbacks."""
    call = Calls()
    script: list[Step] = [Sleep(1, 2)]
    pending = list(callees)
    while pending:
        size = rng.randint(1, min(3, len(pending)))
        group = [random_call(rng, call, pending.pop(0)) for _ in range(size)]
        block: Step = group[0] if size == 1 else Parallel(tuple(group))
        script.append(Span("work", {}, (block,)) if rng.random() < 0.3 else block)
    return script


def random_call(rng: random.Random, call: Calls, callee: str) -> Call:
    on_error = "ignore" if rng.random() < 0.25 else "fail"
    errors = rng.choice([{}, {"any": Failure(500)}, {"timeout": Failure(504), "any": Failure(503)}])
    return call(callee, rng.choice([0.5, 1.0, 2.0, 5.0]), on_error, errors)


SEEDS = range(12)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_graphs_keep_the_truth_s_invariants(seed: int) -> None:
    shop = random_graph(seed)
    every = list(hops(shop))
    absorbed = absorbed_hops(shop)
    assert {name for _, name in every} == set(shop.names)  # every service is reached
    assert judge([], graph=shop) == HEALTHY
    for hop, name in every:
        verdict = judge([error(name, hop)], graph=shop)
        if hop in absorbed:
            assert verdict == HEALTHY, (hop, name)
        else:
            assert verdict.expected_status != 200 and verdict[1:] == (name, (name,)), (hop, name, verdict)
        assert judge([latency(name, hop, 1)], graph=shop) == (200, name, (name,))  # within every timeout


@pytest.mark.parametrize("seed", SEEDS)
def test_random_faults_on_random_graphs_blame_their_first_root_cause(seed: int) -> None:
    shop = random_graph(seed)
    rng = random.Random(seed)
    every = list(hops(shop))
    for _ in range(20):
        faults = [random_fault(rng, *rng.choice(every)) for _ in range(rng.randint(1, 4))]
        verdict = judge(faults, Timeouts(checkout_s=rng.choice([1.0, 30.0])), shop)
        assert len(set(verdict.root_cause_services)) == len(verdict.root_cause_services)
        assert set(verdict.root_cause_services) <= {f["service"] for f in faults if f["kind"] != "noise"}
        if verdict.root_cause_service is None:
            assert verdict.root_cause_services == () and verdict.expected_status == 200, faults
        else:
            assert verdict.root_cause_services[0] == verdict.root_cause_service, faults


def random_fault(rng: random.Random, hop: str, name: str) -> dict[str, Any]:
    kind = rng.choice(["latency", "hang", "error", "drop", "noise"])
    if kind in ("latency", "hang"):
        return fault(name, kind, hop, delay_ms=rng.choice([10, 400, 900, 1800, 6000]))
    return fault(name, kind, hop, status=rng.choice([429, 500, 503]) if kind == "error" else None)
