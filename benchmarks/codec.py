"""Benchmark of the Avro codec: OrderEvent encodes/s and decodes/s in one process.

    python -m benchmarks.codec [--records 50000] [--runs 5] [--json]

Two data sets of `--records` OrderEvents each, every event a distinct object whose decimals
and datetimes are freshly built (as a producer parsing its input would):

* ``realistic``: a lifecycle mix (SUBMITTED, ACCEPTED, partial and full FILLED, CANCELED,
  REPLACED, REJECTED) over 200 symbols, prices on a 0.01 tick grid random-walking per symbol,
  quantities in round lots, average prices and commissions computed as a real feed would.
* ``unique-decimals``: the same events with every decimal made unique (8 random fractional
  digits), so the codec's decimal caches never hit: the worst case.

For each: the median over `--runs` runs of encoding all records, and of decoding them; each
result is dropped at once, as in a producer (librdkafka copies the bytes) and a consumer (the
record is applied, then dropped). Wall clock
(``perf_counter``) and process CPU time (``process_time``) are reported; the best run too, since
other load on a shared box shows up in the medians.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from backbone.codec.avro import AvroCodec
from backbone.domain.events import (
    EventType,
    Liquidity,
    OrderEvent,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    deterministic_event_id,
)

CENT = Decimal("0.01")
EIGHT = Decimal("0.00000001")


class _Order:
    """One simulated order: emits its lifecycle events with consistent quantities."""

    def __init__(self, rng: random.Random, order_no: int, symbol: str, price: Decimal, qty: Decimal, t: datetime):
        self.rng, self.qty, self.price, self.t = rng, qty, price, t
        self.seq = 0
        self.cum = Decimal(0)
        self.notional = Decimal(0)
        self.base: dict[str, object] = dict(
            account=f"ACC-{rng.randint(1, 40)}",
            symbol=symbol,
            side=rng.choice(list(Side)),
            order_type=OrderType.LIMIT,
            time_in_force=rng.choice([TimeInForce.DAY, TimeInForce.GTC, TimeInForce.IOC]),
            order_id=f"O-{order_no:08d}",
            cl_ord_id=f"C-{order_no:08d}",
            price=price,
            currency="USD",
            actor=f"algo-{rng.randint(1, 9)}",
        )

    def event(self, event_type: EventType, status: OrderStatus, **extra: object) -> OrderEvent:
        self.seq += 1
        self.t += timedelta(microseconds=self.rng.randint(50, 5000))
        avg = (self.notional / self.cum).quantize(EIGHT) if self.cum else Decimal(0)
        fields = dict(self.base, **extra)
        for key in ("price", "last_px", "last_qty", "commission"):  # fresh objects, as parsed input
            if fields.get(key) is not None:
                fields[key] = Decimal(str(fields[key]))
        done = status in (OrderStatus.CANCELED, OrderStatus.REJECTED)
        return OrderEvent(
            event_id=deterministic_event_id(str(self.base["order_id"]), str(self.seq)),
            event_type=event_type,
            event_time=self.t,
            ingest_time=self.t + timedelta(microseconds=self.rng.randint(100, 900)),
            seq=self.seq,
            order_qty=Decimal(str(self.qty)),
            cum_qty=Decimal(str(self.cum)),
            leaves_qty=Decimal(0) if done else Decimal(str(self.qty - self.cum)),
            avg_px=Decimal(str(avg)),
            order_status=status,
            **fields,  # type: ignore[arg-type]
        )

    def lifecycle(self) -> list[OrderEvent]:
        rng, events = self.rng, [self.event(EventType.SUBMITTED, OrderStatus.PENDING_NEW)]
        if rng.random() < 0.03:
            return [*events, self.event(EventType.REJECTED, OrderStatus.REJECTED, reason="price outside collar")]
        events.append(self.event(EventType.ACCEPTED, OrderStatus.NEW))
        if rng.random() < 0.1:
            events.append(
                self.event(
                    EventType.REPLACE_REQUESTED, OrderStatus.PENDING_REPLACE, orig_cl_ord_id=self.base["cl_ord_id"]
                )
            )
            self.price += CENT
            self.base["price"] = self.price
            events.append(self.event(EventType.REPLACED, OrderStatus.NEW))
        while self.cum < self.qty and rng.random() < 0.8:
            last = min(self.qty - self.cum, Decimal(100 * rng.randint(1, 20)))
            last_px = self.price - CENT * rng.randint(0, 2)
            self.cum += last
            self.notional += last * last_px
            status = OrderStatus.FILLED if self.cum == self.qty else OrderStatus.PARTIALLY_FILLED
            events.append(
                self.event(
                    EventType.FILLED,
                    status,
                    exec_id=f"E-{self.base['order_id']}-{self.seq + 1}",
                    last_qty=last,
                    last_px=last_px,
                    commission=(last * Decimal("0.0035")).quantize(Decimal("0.0001")),
                    liquidity=rng.choice(list(Liquidity)),
                )
            )
        if self.cum < self.qty:
            events.append(self.event(EventType.CANCEL_REQUESTED, OrderStatus.PENDING_CANCEL))
            events.append(self.event(EventType.CANCELED, OrderStatus.CANCELED))
        return events


def realistic_events(count: int, seed: int = 7) -> list[OrderEvent]:
    rng = random.Random(seed)
    symbols = [f"SYM{i:03d}" for i in range(200)]
    px = {s: Decimal(rng.randrange(500, 50000)) / 100 for s in symbols}
    t0 = datetime(2026, 11, 22, 14, 30, tzinfo=UTC)
    events: list[OrderEvent] = []
    order_no = 0
    while len(events) < count:
        order_no += 1
        symbol = rng.choice(symbols)
        px[symbol] = max(CENT, px[symbol] + CENT * rng.randint(-5, 5))
        price = px[symbol] + CENT * rng.randint(-3, 3)
        qty = Decimal(100 * rng.randint(1, 50))
        t = t0 + timedelta(microseconds=order_no * 1731)
        events.extend(_Order(rng, order_no, symbol, price, qty, t).lifecycle())
    return events[:count]


def unique_decimals(events: list[OrderEvent], seed: int = 11) -> list[OrderEvent]:
    rng = random.Random(seed)

    def fresh(d: Decimal | None) -> Decimal | None:
        return None if d is None else d + Decimal(rng.randrange(1, 10**8)).scaleb(-8)

    return [
        e.replace(
            order_qty=fresh(e.order_qty),
            cum_qty=fresh(e.cum_qty),
            leaves_qty=fresh(e.leaves_qty),
            avg_px=fresh(e.avg_px),
            price=fresh(e.price),
            last_qty=fresh(e.last_qty),
            last_px=fresh(e.last_px),
            commission=fresh(e.commission),
        )
        for e in events
    ]


def measure(codec: AvroCodec, events: list[OrderEvent], runs: int, reference: bool = False) -> dict[str, float]:
    """Timed loops encode/decode and drop the result, as a producer (librdkafka copies the
    bytes) and a consumer (the record is applied, then dropped) do; correctness is checked
    in an untimed pass first. `reference`: time the codec's fastavro path instead."""
    encode, decode = codec.encode, codec.decode
    if reference:
        encode, decode = codec._encode_via_fastavro, codec._decode_via_fastavro
    payloads = [encode(e) for e in events]
    assert [decode(p) for p in payloads] == events, "round trip failed"
    enc_wall, enc_cpu, dec_wall, dec_cpu = [], [], [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        for e in events:
            encode(e)
        enc_wall.append(time.perf_counter() - w)
        enc_cpu.append(time.process_time() - c)
        w, c = time.perf_counter(), time.process_time()
        for p in payloads:
            decode(p)
        dec_wall.append(time.perf_counter() - w)
        dec_cpu.append(time.process_time() - c)
    n = len(events)
    return {
        "records": n,
        "avg_bytes": round(sum(map(len, payloads)) / n, 1),
        "encodes_per_s": round(n / statistics.median(enc_wall)),
        "decodes_per_s": round(n / statistics.median(dec_wall)),
        "encodes_per_cpu_s": round(n / statistics.median(enc_cpu)),
        "decodes_per_cpu_s": round(n / statistics.median(dec_cpu)),
        "best_encodes_per_s": round(n / min(enc_wall)),
        "best_decodes_per_s": round(n / min(dec_wall)),
    }


def _python_speed() -> float:
    """A fixed pure-Python workload, to compare figures taken on different or busy boxes."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        x = 0
        for i in range(1_000_000):
            x += i
        best = min(best, time.perf_counter() - start)
    return round(best * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--fastavro", action="store_true", help="also time the codec's fastavro path (the baseline)")
    args = parser.parse_args()
    codec = AvroCodec()
    python = AvroCodec(compiled=False)
    realistic = realistic_events(args.records)
    unique = unique_decimals(realistic)
    compiled = "compiled" if codec.compiled else "NOT compiled (no C build)"
    results = {
        f"realistic, {compiled}": measure(codec, realistic, args.runs),
        "realistic, Python paths": measure(python, realistic, args.runs),
        f"unique-decimals, {compiled}": measure(codec, unique, args.runs),
        "unique-decimals, Python": measure(python, unique, args.runs),
    }
    if args.fastavro:
        results["realistic via fastavro"] = measure(codec, realistic, args.runs, reference=True)
    loop_ns = _python_speed()
    if args.json:
        print(json.dumps({**results, "python_loop_ns": loop_ns}))
        return
    print(
        f"Avro codec, OrderEvent, median of {args.runs} runs of {args.records} records "
        f"(Python {sys.version.split()[0]})"
    )
    print(f"  box speed: {loop_ns} ns per iteration of `for i in range(n): x += i` (best of 5)")
    for name, r in results.items():
        print(
            f"  {name:32s} median: encode {r['encodes_per_s']:>8,}/s  decode {r['decodes_per_s']:>8,}/s"
            f"   CPU time: encode {r['encodes_per_cpu_s']:>8,}/s  decode {r['decodes_per_cpu_s']:>8,}/s"
            f"   best run: encode {r['best_encodes_per_s']:>8,}/s  decode {r['best_decodes_per_s']:>8,}/s"
            f"   {r['avg_bytes']} B/record"
        )


if __name__ == "__main__":
    main()
