"""The label price parser: every way a shelf label prints a price reads back as the price that was printed."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shelf.ingest.prices import (
    SUPERSCRIPT_DIGITS,
    LabelLine,
    Price,
    parse_amount,
    parse_price,
    read_label,
    same_price,
)

amounts = st.integers(min_value=1, max_value=999_999).map(lambda cents: Decimal(cents) / 100)
currencies = st.sampled_from(["", "€", "$", "£", "EUR", "CHF"])


def grouped(whole: int, separator: str) -> str:
    """1299 → '1.299' with separator '.'."""
    text = f"{whole:,}"
    return text.replace(",", separator)


def printed(amount: Decimal, decimal: str, currency: str, before: bool, space: bool, thousands: str = "") -> str:
    whole, cents = divmod(int(amount * 100), 100)
    figure = f"{grouped(whole, thousands) if thousands else whole}{decimal}{cents:02d}"
    if not currency:
        return figure
    gap = " " if space or len(currency) > 1 else ""
    return f"{currency}{gap}{figure}" if before else f"{figure}{gap}{currency}"


def superscript(amount: Decimal, currency: str) -> str:
    whole, cents = divmod(int(amount * 100), 100)
    return f"{currency}{whole}" + "".join(SUPERSCRIPT_DIGITS[int(d)] for d in f"{cents:02d}")


@given(amounts, st.sampled_from([".", ","]), currencies, st.booleans(), st.booleans())
@example(Decimal("1.99"), ",", "", True, False)
@example(Decimal("0.05"), ".", "€", True, False)
def test_item_prices_read_back(amount, decimal, currency, before, space):
    price = parse_price(printed(amount, decimal, currency, before, space))
    assert price is not None and price.amount == amount and price.quantity == 1 and price.per == ""
    assert (price.currency != "") == (currency != "")


@given(st.integers(min_value=1000, max_value=999_999).map(lambda c: Decimal(c)),
       st.sampled_from([(".", ","), (",", "."), (" ", ","), ("'", ".")]), currencies)
def test_thousands_separators(amount, separators, currency):
    thousands, decimal = separators
    price = parse_price(printed(amount, decimal, currency, True, True, thousands))
    assert price is not None and price.amount == amount


@given(amounts, st.sampled_from(["", "€", "$"]))
def test_raised_cents(amount, currency):
    price = parse_price(superscript(amount, currency))
    assert price is not None and price.amount == amount


@given(st.integers(min_value=1, max_value=9999), st.sampled_from([".-", ",-", ",–", ".—"]), currencies)
def test_whole_amounts_with_a_dash(whole, dash, currency):
    text = f"{currency}{whole}{dash}"
    assert parse_price(text).amount == Decimal(whole)


@given(st.integers(min_value=1, max_value=99), st.sampled_from(["¢", "c", "p"]))
def test_cents_and_pence(cents, sign):
    assert parse_price(f"{cents}{sign}").amount == Decimal(cents) / 100


@given(st.integers(min_value=2, max_value=12), amounts, st.sampled_from(["for", "für", "pour", "voor", "FOR"]),
       st.sampled_from(["", "€", "$"]), st.sampled_from([".", ","]))
def test_multibuys(quantity, amount, word, currency, decimal):
    price = parse_price(f"{quantity} {word} {printed(amount, decimal, currency, True, False)}")
    assert price is not None and (price.quantity, price.amount) == (quantity, amount)
    assert price.each == (amount / quantity).quantize(Decimal("0.01"), "ROUND_HALF_UP")


def test_us_multibuy():
    assert parse_price("2/$5") == Price(Decimal("5.00"), 2, "", "$")


@given(amounts, st.sampled_from([("kg", "kg"), ("100g", "100 g"), ("100 g", "100 g"), ("l", "l"), ("ml", "ml")]),
       st.sampled_from(["{p}/{u}", "{p} / {u}", "{p} per {u}", "1 {u} = {p}", "{u}: {p}"]),
       st.sampled_from(["", "€"]))
def test_unit_prices(amount, unit, layout, currency):
    written, canonical = unit
    if layout.startswith("1 ") and written.startswith("100"):
        return  # "1 100g = …" is not a thing
    text = layout.format(p=printed(amount, ",", currency, False, True), u=written)
    price = parse_price(text)
    assert price is not None and price.amount == amount and price.per == canonical, text


@given(amounts)
def test_ocr_lookalikes_inside_numbers(amount):
    text = printed(amount, ".", "", True, False)
    garbled = text.replace("0", "O").replace("1", "l")
    assert parse_price(garbled).amount == amount


@pytest.mark.parametrize("text", ["199", "Cola 1.5 L", "500 g", "", "for", "kg", "2 for", "EAN 4006381333931",
                                  "1,2345", "Best before 12/2026"])
def test_what_is_not_a_price(text):
    assert parse_price(text) is None


@given(st.text(max_size=80))
def test_any_text_reads_or_says_no(text):
    price = parse_price(text)
    assert price is None or (price.amount >= 0 and price.quantity >= 1)


def test_a_label_shows_its_item_price_before_its_unit_price_and_its_multibuy():
    reading = read_label([LabelLine("€3,98/kg", 0.99, 14), LabelLine("1,99", 0.97, 60),
                          LabelLine("Cola Zero 1.5 L", 0.95, 16), LabelLine("2 for 3.00", 0.9, 30)])
    assert reading.price == Price(Decimal("1.99"))
    assert reading.confidence == pytest.approx(0.97)
    assert reading.text.startswith("1,99 | 2 for 3.00")
    only_unit = read_label([LabelLine("3.98/kg", 0.8, 40), LabelLine("Apples", 0.9, 20)])
    assert only_unit.price.per == "kg"
    unreadable = read_label([LabelLine("Apples", 0.9, 20)])
    assert unreadable.price is None and unreadable.text == "Apples"


def test_planned_prices():
    assert parse_amount("1,99") == parse_amount("€1.99") == Decimal("1.99")
    assert parse_amount("2") == Decimal("2.00")
    assert parse_amount("2 for 3") is None and parse_amount("abc") is None and parse_amount("") is None
    assert same_price(1.99, Decimal("1.99")) and not same_price(1.99, 2.09) and not same_price(None, 1)


def test_canonical_text():
    assert Price(Decimal("1.99"), currency="€").text() == "€1.99"
    assert Price(Decimal("3"), 2).text() == "2 for 3.00"
    assert Price(Decimal("3.98"), per="kg").text() == "3.98/kg"
    assert Price(Decimal("1.99"), currency="CHF").text() == "1.99 CHF"
