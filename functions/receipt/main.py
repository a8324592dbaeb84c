"""Computes an order's receipt from the shop's data shipped in ``data/``.

Money is ``Decimal`` throughout and goes out as strings. Line totals are
exact; the discount and the tax round half-up to the cent (ROUND_HALF_UP,
as receipts and most tax offices do), once each, on the whole order.
"""

import csv
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

DATA = Path(__file__).parent / "data"
CENT = Decimal("0.01")


def handler(event, context):
    order_id = event.get("orderId")
    if not order_id:
        raise ValueError("the event needs an orderId")

    order = next((row for row in read("orders") if row["order_id"] == order_id), None)
    if order is None:
        raise LookupError(f"no order {order_id!r}")
    lines = [row for row in read("line_items") if row["order_id"] == order_id]
    rate = Decimal(by_key("tax_rates", "region")[order["region"]]["rate"])

    subtotal = sum((line_total(line) for line in lines), Decimal(0))
    discount = discount_of(order["discount_code"], subtotal)
    tax = ((subtotal - discount) * rate).quantize(CENT, ROUND_HALF_UP)
    return {
        "orderId": order_id,
        "customer": order["customer"],
        "placedAt": order["placed_at"],
        "currency": order["currency"],
        "lines": [
            {
                "sku": line["sku"],
                "name": line["name"],
                "quantity": int(line["quantity"]),
                "unitPrice": line["unit_price"],
                "total": str(line_total(line)),
            }
            for line in lines
        ],
        "subtotal": str(subtotal),
        "discountCode": order["discount_code"] or None,
        "discount": str(discount),
        "taxRate": str(rate),
        "tax": str(tax),
        "total": str(subtotal - discount + tax),
    }


def line_total(line):
    return int(line["quantity"]) * Decimal(line["unit_price"])


def discount_of(code, subtotal):
    """A percentage of the subtotal, or a fixed amount never above it."""
    if not code:
        return Decimal("0.00")
    discount = by_key("discounts", "code")[code]
    value = Decimal(discount["value"])
    if discount["kind"] == "percent":
        return (subtotal * value / 100).quantize(CENT, ROUND_HALF_UP)
    return min(value, subtotal)


def read(name):
    with open(DATA / f"{name}.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def by_key(name, key):
    return {row[key]: row for row in read(name)}
