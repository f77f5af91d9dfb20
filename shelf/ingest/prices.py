"""Reading a price out of the text of a shelf-edge label: pure string work, no OCR and no model.

OCR gives lines of text; shelf labels print prices in many ways, all of which read as one `Price`:

    1,99   1.99   €1.99   1.99 €   EUR 1,99   $1.99   99p   99¢   1⁹⁹ (cents raised)   1.-   1 299,00   1,299.00
    2 for 3.00   2 für 3,00   3 pour 5 €   2/$5            a multi-buy: the amount for `quantity` items
    €3.98/kg   3,98 € / kg   1 kg = 3,98 €   0.45/100g    a unit price: the amount per `per`

Letters OCR confuses with digits (O for 0, l and I for 1, S for 5) are read as digits inside a number, and an
`f` or `E` stuck to a number's front as the £ or € it was. A bare
number with no decimals, currency or `.-` (say "199") is not taken for a price: on a label it is more often a
product code, a weight or a superscript price the OCR flattened (the reader then says where the cents were).
The planogram's `price` column is read with the same parser, so "1,99" there and "€1.99" on a label agree.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from shelf.ingest.regions import Box

CURRENCY_SIGNS = "€$£¥₹₽₩¢"
CURRENCY_WORDS = ("eur", "euro", "usd", "gbp", "chf", "sek", "nok", "dkk", "pln", "czk", "huf", "ron", "kr", "zł",
                  "zl", "kč", "ft", "lei", "fr.", "fr", "sfr", "lv")
SUPERSCRIPT_DIGITS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
UNITS = {"kg": "kg", "g": "g", "100g": "100 g", "100 g": "100 g", "l": "l", "1l": "l", "ltr": "l", "litre": "l",
         "liter": "l", "ml": "ml", "100ml": "100 ml", "100 ml": "100 ml", "cl": "cl", "lb": "lb", "oz": "oz",
         "m": "m", "st": "each", "stk": "each", "pc": "each", "pcs": "each", "piece": "each", "each": "each",
         "ea": "each", "1kg": "kg", "1 kg": "kg", "1 l": "l"}
MAX_AMOUNT = Decimal("1000000")
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Price:
    """One price as printed. `amount` is the figure itself (3.00 in "2 for 3.00"), `quantity` how many items it
    buys, `per` the unit of a unit price ("kg", "100 g"; "" for an item price), `currency` the sign or code."""

    amount: Decimal
    quantity: int = 1
    per: str = ""
    currency: str = ""

    @property
    def each(self) -> Decimal:
        """What one item costs: the amount, or a multi-buy's amount shared out (to the cent)."""
        if self.quantity == 1:
            return self.amount
        return (self.amount / self.quantity).quantize(CENT, ROUND_HALF_UP)

    @property
    def is_item_price(self) -> bool:
        return self.quantity == 1 and not self.per

    def text(self) -> str:
        """A canonical spelling: '1.99', '€1.99', '2 for 3.00', '3.98/kg'."""
        figure = f"{self.currency}{self.amount:.2f}" if self.currency in CURRENCY_SIGNS or not self.currency \
            else f"{self.amount:.2f} {self.currency}"
        if self.quantity > 1:
            figure = f"{self.quantity} for {figure}"
        return f"{figure}/{self.per}" if self.per else figure


# ---------------------------------------------------------------------------------------------------------------
# Text clean-up: what OCR and typesetting do to a number

_LOOKALIKES = str.maketrans({"O": "0", "o": "0", "D": "0", "Q": "0", "l": "1", "I": "1", "|": "1", "i": "1",
                             "S": "5", "s": "5", "B": "8", "Z": "2", "z": "2"})
_LOOK = "0-9OoDQlI|iSsBZz"
_NUMBER_LIKE = re.compile(rf"(?<![A-Za-zÀ-ž])[{_LOOK}]+(?:[.,][{_LOOK}]+)*(?![A-Za-zÀ-ž])")
_DASHES = "-–—‒−"


def _digits_from_lookalikes(text: str) -> str:
    """Letters OCR reads for digits, turned back into digits inside what is plainly a number: a run of digits and
    look-alikes (O for 0, l and I for 1, S for 5 …) that holds a digit or a decimal separator and touches no other
    letter ("1.9O" → "1.90", "l,99" → "1,99", "lO.OO" → "10.00"); words ("for", "Bio", "kg") stay as they are."""
    def fixed(match: re.Match) -> str:
        run = match.group(0)
        if any(c.isdigit() for c in run) or any(c in ".," for c in run):
            return run.translate(_LOOKALIKES)
        return run
    return _NUMBER_LIKE.sub(fixed, text)


def _superscripts(text: str) -> str:
    """'1⁹⁹' → '1.99': cents printed raised (OCR and Unicode both give them as superscript digits)."""
    def lowered(match: re.Match) -> str:
        cents = "".join(str(SUPERSCRIPT_DIGITS.index(c)) for c in match.group(2))
        return f"{match.group(1)}.{cents}" if match.group(1) else f"0.{cents}"
    return re.sub(rf"(\d*)\s?([{SUPERSCRIPT_DIGITS}]{{2}})(?![{SUPERSCRIPT_DIGITS}])", lowered, text)


def _normalised(text: str) -> str:
    text = _superscripts(text)
    text = re.sub(r"(?<![A-Za-z])[fE](?=\d)", "", text)  # £ and € as the recogniser often misreads them
    text = text.replace("\u00a0", " ").replace("\u202f", " ").replace("＄", "$").replace("，", ",").replace("．", ".")
    text = re.sub(r"\s+", " ", text).strip()
    return _digits_from_lookalikes(text)


# ---------------------------------------------------------------------------------------------------------------
# Numbers

_NUMBER = r"\d{1,3}(?:[ .,'’]\d{3})+(?:[.,]\d{1,2})?(?:[.,][" + _DASHES + r"]+)?|\d+(?:[.,](?:\d{1,3}|[" + \
    _DASHES + r"]+))?"
_CURRENCY = "(?:[" + re.escape(CURRENCY_SIGNS) + "]|" + "|".join(
    re.escape(w) for w in sorted(CURRENCY_WORDS, key=len, reverse=True)) + r")(?![a-zà-ž])"
_UNIT = r"(?:100\s?g|100\s?ml|1\s?kg|1\s?l|kg|g|l|ltr|litre|liter|ml|cl|lb|oz|m|stk|st|pcs|pc|piece|each|ea)" \
    r"(?-i:(?![a-zäöüß]))"  # "kg" ends at "kgCola" (OCR drops spaces), not inside "kgs" or "gram"
_SIZE = re.compile(r"^\s?(?:kg|g|l|ml|cl|lb|oz|ltr|litre|liter)(?-i:(?![a-zäöüß]))", re.IGNORECASE)


def _amount(number: str) -> tuple[Decimal, bool] | None:
    """'1.299,00' → (1299.00, has decimals); '1.-' → (1, True: the dash says "no cents"); None if unusable."""
    number = number.strip()
    dashed = number[-1] in _DASHES
    if dashed:
        number = number.rstrip(_DASHES).rstrip(".,")
    groups = re.split(r"[ .,'’]", number)
    separators = re.findall(r"[ .,'’]", number)
    decimals = ""
    if separators and separators[-1] in ".," and len(groups[-1]) in (1, 2) and not dashed:
        decimals = groups.pop()
        separators.pop()
    elif separators and len(groups[-1]) != 3:
        # "1.2345" or "12,3456": not a way prices are printed
        if not (len(separators) == 1 and separators[0] in ".," and len(groups[-1]) == 3):
            return None
    if any(len(g) != 3 for g in groups[1:]):
        return None
    try:
        value = Decimal("".join(groups) + ("." + decimals if decimals else ""))
    except InvalidOperation:
        return None
    if value >= MAX_AMOUNT:
        return None
    return value, bool(decimals) or dashed


def _currency_code(text: str) -> str:
    text = text.strip()
    if text in CURRENCY_SIGNS:
        return text
    lowered = text.lower().rstrip(".")
    return {"euro": "EUR", "eur": "EUR", "zl": "zł", "fr": "CHF", "sfr": "CHF"}.get(lowered, lowered.upper()
                                                                                     if len(lowered) == 3 else text)


_PRICE = re.compile(
    rf"(?P<pre>{_CURRENCY})?\s?(?P<number>{_NUMBER})\s?(?P<post>{_CURRENCY}|[cp¢](?![a-z]))?", re.IGNORECASE)
_MULTIBUY = re.compile(r"(?:^|\s)(?P<quantity>\d{1,2})\s?(?:for|für|fur|pour|voor|por|/)\s?$", re.IGNORECASE)
_PER_AFTER = re.compile(rf"^\s?(?:/|per|pro|le|la|el|je)\s?(?P<unit>{_UNIT})", re.IGNORECASE)
_PER_BEFORE = re.compile(rf"(?P<unit>{_UNIT})\s?(?:=|:)\s?$", re.IGNORECASE)


@dataclass(frozen=True)
class _Found:
    price: Price
    start: int
    explicit: bool  # decimals, a currency or a dash: it says it is money


def _prices_in(text: str) -> list[_Found]:
    found = []
    for match in _PRICE.finditer(text):
        parsed = _amount(match.group("number"))
        if parsed is None:
            continue
        value, decimals = parsed
        pre, post = match.group("pre"), match.group("post")
        currency = ""
        if post and post.lower() in ("c", "p", "¢"):
            if decimals:
                continue  # "1.99c" is not a way to write a price
            value, currency = value / 100, ("¢" if post.lower() != "p" else "£")
        elif pre or post:
            currency = _currency_code(pre or post)
        before, after = text[:match.start()], text[match.end():]
        if not (pre or post) and _SIZE.match(after):
            continue  # "1.5 L", "500 g": the pack size, not a price
        per = ""
        if unit := _PER_AFTER.match(after):
            per = UNITS.get(re.sub(r"\s", "", unit.group("unit").lower()), unit.group("unit").lower())
        elif unit := _PER_BEFORE.search(before):
            per = UNITS.get(re.sub(r"\s", "", unit.group("unit").lower()), unit.group("unit").lower())
        multibuy = _MULTIBUY.search(before)
        quantity = int(multibuy.group("quantity")) if multibuy and int(multibuy.group("quantity")) > 1 else 1
        if quantity > 1 and multibuy.group(0).rstrip().endswith("/") and not (decimals or currency):
            quantity = 1  # "2/$5" is a multi-buy, "12/2026" a date
        explicit = decimals or bool(currency) or quantity > 1
        found.append(_Found(Price(value.quantize(CENT, ROUND_HALF_UP) if value < MAX_AMOUNT else value, quantity,
                                  per, currency), match.start(), explicit))
    return found


def parse_price(text: str) -> Price | None:
    """The price a line of label text shows (its item price before a unit price), or None when it shows none.
    Never raises, whatever the text."""
    if not isinstance(text, str) or not text.strip() or len(text) > 200:
        return None
    cleaned = _normalised(text)
    candidates = [f for f in _prices_in(cleaned) if f.explicit]
    if not candidates:
        loose = re.fullmatch(r"\D{0,3}(\d{1,4}) (\d{2})\D{0,3}", cleaned)  # "1 99": cents OCR split off
        return Price(Decimal(f"{loose.group(1)}.{loose.group(2)}")) if loose else None
    candidates.sort(key=lambda f: (not f.price.is_item_price, f.price.per != "", f.start))
    return candidates[0].price


def parse_amount(text: str) -> Decimal | None:
    """A planned price as typed in a planogram ("1.99", "1,99", "€1.99", "2"): an item price, or None."""
    if not isinstance(text, str) or not text.strip():
        return None
    cleaned = _normalised(text)
    found = _prices_in(cleaned)
    if len(found) != 1 or not found[0].price.is_item_price:
        return None
    return found[0].price.amount


@dataclass(frozen=True)
class LabelLine:
    """One line of text the OCR read on a label: the text, the OCR's confidence, and its height in pixels (the
    price is the biggest print on a label)."""

    text: str
    confidence: float
    height: float


@dataclass(frozen=True)
class LabelReading:
    price: Price | None
    text: str  # every line read, biggest first, joined with " | "
    confidence: float  # the OCR's confidence in the line the price came from (or in the biggest line)


def read_label(lines: Sequence[LabelLine]) -> LabelReading:
    """The price a label shows, from its lines: an item price wins over a multi-buy, a multi-buy over a unit
    price; among equals the biggest print wins."""
    ordered = sorted(lines, key=lambda line: -line.height)
    text = " | ".join(line.text for line in ordered if line.text)
    best: tuple[tuple, Price, float] | None = None
    for rank, line in enumerate(ordered):
        price = parse_price(line.text)
        if price is None:
            continue
        key = (not price.is_item_price, price.per != "", rank)
        if best is None or key < best[0]:
            best = (key, price, line.confidence)
    if best is None:
        return LabelReading(None, text, float(ordered[0].confidence) if ordered else 0.0)
    return LabelReading(best[1], text, float(best[2]))


def same_price(read: Decimal | float | None, planned: Decimal | float | None) -> bool:
    """Two prices are the same to the cent."""
    if read is None or planned is None:
        return False
    return Decimal(str(read)).quantize(CENT, ROUND_HALF_UP) == Decimal(str(planned)).quantize(CENT, ROUND_HALF_UP)


@dataclass(frozen=True)
class ShelfLabel:
    """A price label on a photo: where (photo pixels), what it says, the price read from it, and the facing group
    it prices (positions of the photo's product regions, the one it sits under first; empty when it hangs under an
    empty stretch)."""

    box: Box
    price: Price | None
    text: str
    confidence: float
    facings: tuple[int, ...] = ()


def labels_json(labels: Sequence[ShelfLabel]) -> str:
    """Labels as plain JSON (what a batch row carries between workers)."""
    return json.dumps([{"box": list(label.box.as_tuple), "text": label.text, "confidence": round(label.confidence, 6),
                        "facings": list(label.facings),
                        "price": None if label.price is None else {"amount": str(label.price.amount),
                                                                   "quantity": label.price.quantity,
                                                                   "per": label.price.per,
                                                                   "currency": label.price.currency}}
                       for label in labels])


def labels_from_json(text: str) -> list[ShelfLabel]:
    out = []
    for item in json.loads(text or "[]"):
        p = item["price"]
        price = None if p is None else Price(Decimal(p["amount"]), int(p["quantity"]), p["per"], p["currency"])
        out.append(ShelfLabel(Box(*map(int, item["box"])), price, item["text"], float(item["confidence"]),
                              tuple(int(i) for i in item.get("facings", ()))))
    return out
