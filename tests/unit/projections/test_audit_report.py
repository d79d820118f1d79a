"""report.html of the audit export (pure): every value escaped, nothing fetched, money exact."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser

from hypothesis import given
from hypothesis import strategies as st
from tape import Tape

from backbone.codec import json_form
from backbone.domain.events import MarketMark, Side
from projections.audit_export import jsonl_line
from projections.audit_report import Entry, Head, money, render

T0 = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
EVIL = '<script>alert("x")</script>&"\''


def _entries(account: str = "A1", symbol: str = "AAPL") -> list[Entry]:
    tape = Tape()
    tape.order("O1", account, symbol, Side.BUY, 100, price="1234.5")
    tape.records.append(tape.mark(symbol, "1234.25").replace(bid=Decimal("1234"), ask=Decimal("1234.5")))
    tape.fill("O1", 60, "1234.5")
    out = []
    for offset, r in enumerate(tape.records):
        topic = "trading.marketdata" if isinstance(r, MarketMark) else "trading.orders"
        out.append(Entry(topic, 0, offset, 0, symbol.encode(), b"v", bytes(32), None, None, None, r))
    return out


class _Texts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def _parse(page: str) -> _Texts:
    parser = _Texts()
    parser.feed(page)
    return parser


def test_a_hostile_account_symbol_and_query_show_as_text() -> None:
    entries = _entries(account=EVIL, symbol=f"X{EVIL}")
    refused = Entry("trading.orders", 0, 9, 0, None, None, bytes(32), None, "decode_error", EVIL, None, EVIL)
    page = render(f"Account {EVIL}", [("account", EVIL)], [*entries, refused],
                  [Head("trading.orders", 0, 9, "ab" * 32)], EVIL, T0)
    parsed = _parse(page)
    assert "script" not in parsed.tags  # no element made of the values
    assert sum(EVIL in t for t in parsed.texts) >= 5  # the account, symbol, query, detail, check: as text
    assert "<script" not in page and "&lt;script&gt;" in page


def test_the_page_fetches_nothing() -> None:
    page = render("Order O1", [("order_id", "O1")], _entries(), [], "checked", T0)
    # the SVG namespace is a name, never fetched; nothing else refers outside the file
    outside = re.findall(r"(?:src|href)\s*=|url\(|@import|https?://(?!www\.w3\.org/2000/svg)", page)
    assert outside == []
    assert "<svg" in page and "<polyline" in page and 'class="fill"' in page


def test_money_is_exact_with_thousands_separators() -> None:
    assert [money(Decimal(v)) for v in ("1234567.50", "-1234.5", "0.00000001", "100", "999", "0")] == \
        ["1,234,567.5", "-1,234.5", "0.00000001", "100", "999", "0"]
    assert money(None) == ""


@given(st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=8))
def test_money_reads_back_as_the_same_value(value: Decimal) -> None:
    assert Decimal(money(value).replace(",", "")) == value


def test_an_empty_pack_says_so() -> None:
    page = render("Account A1", [("account", "A1")], [], [Head("trading.orders", 0, None, None)], "checked", T0)
    assert "EMPTY: no archived record matches this query." in page
    assert "<svg" not in page and "nothing archived" in page


def test_the_chart_spans_the_times_and_prices_it_draws() -> None:
    entries = _entries()
    page = render("Order O1", [("order_id", "O1")], entries, [], "checked", T0)
    first, last = entries[0].when, entries[-1].when
    assert first + timedelta(milliseconds=3) == last
    xs = [float(x) for x in re.findall(r'<circle class="[a-z-]+" cx="([0-9.]+)"', page)]
    assert min(xs) == 90 and max(xs) == 940  # the plot's left and right edges
    assert "1,234.5" in page and "1,234.25" in page


def test_a_jsonl_line_embeds_the_canonical_record_and_stays_one_line() -> None:
    entry = _entries()[0]
    detailed = Entry(entry.topic, 0, 0, 0, None, b"v", bytes(32), None, "r", "line\u2028break\nhere", entry.record)
    line = jsonl_line(detailed)
    assert line.endswith(f',"record":{json_form.dumps(entry.record)}}}') and len(line.splitlines()) == 1
