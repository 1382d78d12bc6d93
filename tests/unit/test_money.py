"""Money in ISO 4217 minor units, and as each payment provider takes it."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from worker.core.money import (
    ISO_4217,
    RAZORPAY_CURRENCIES,
    STRIPE_CURRENCIES,
    UnsupportedAmount,
    from_provider,
    is_iso_currency,
    iso_exponent,
    provider_currency,
    to_provider,
)

SUPPORTED = {
    "mock": frozenset(ISO_4217),
    "stripe": STRIPE_CURRENCIES,
    "razorpay": RAZORPAY_CURRENCIES,
}
PAIRS = sorted((provider, code) for provider, codes in SUPPORTED.items() for code in codes)


def test_iso_table_holds_the_active_codes_with_their_exponents() -> None:
    assert 160 <= len(ISO_4217) <= 190
    assert all(len(code) == 3 and code.isupper() for code in ISO_4217)
    expected = {"USD": 2, "JPY": 0, "BHD": 3, "KWD": 3, "XAF": 0, "XOF": 0, "XPF": 0}
    assert {code: ISO_4217[code] for code in expected} == expected
    assert ISO_4217["CLF"] == 4
    assert ISO_4217["UYW"] == 4
    assert ISO_4217["ISK"] == 0
    assert ISO_4217["UGX"] == 0
    assert ISO_4217["MGA"] == 2
    for no_minor_unit in ("XAU", "XAG", "XPT", "XPD", "XDR", "XSU", "XUA", "XBA", "XTS", "XXX"):
        assert no_minor_unit not in ISO_4217


def test_provider_tables_are_iso_codes() -> None:
    assert ISO_4217.keys() >= STRIPE_CURRENCIES
    assert ISO_4217.keys() >= RAZORPAY_CURRENCIES
    assert {"USD", "EUR", "INR", "JPY", "KWD", "ISK", "UGX"} <= STRIPE_CURRENCIES
    assert {"USD", "EUR", "INR", "JPY", "KWD", "ISK", "UGX"} <= RAZORPAY_CURRENCIES


def test_lookups_ignore_case_and_refuse_unknown_codes() -> None:
    assert is_iso_currency("usd")
    assert is_iso_currency("Usd")
    assert not is_iso_currency("XYZ")
    assert not is_iso_currency("XAU")
    assert iso_exponent("jpy") == 0
    assert iso_exponent("kwd") == 3
    with pytest.raises(ValueError, match="XYZ"):
        iso_exponent("XYZ")
    with pytest.raises(ValueError, match="not an active ISO 4217"):
        iso_exponent("")


@pytest.mark.parametrize("provider", ["mock", "stripe", "razorpay"])
def test_two_decimal_and_zero_decimal_currencies_are_unchanged(provider: str) -> None:
    assert to_provider(provider, 1099, "USD") == 1099
    assert from_provider(provider, 1099, "usd") == 1099
    assert to_provider(provider, 500, "JPY") == 500
    assert from_provider(provider, 500, "jpy") == 500


def test_inr_on_razorpay_is_paise_unchanged() -> None:
    assert to_provider("razorpay", 29900, "INR") == 29900
    assert from_provider("razorpay", 29900, "INR") == 29900
    assert provider_currency("razorpay", "inr") == "INR"


def test_three_decimal_amounts_must_end_in_zero() -> None:
    assert to_provider("stripe", 1000, "KWD") == 1000
    assert to_provider("razorpay", 99990, "KWD") == 99990
    with pytest.raises(UnsupportedAmount) as refused:
        to_provider("stripe", 1005, "KWD")
    assert str(refused.value) == (
        "stripe takes KWD amounts in multiples of 10 (three-decimal currency); 1005 is not"
    )
    with pytest.raises(UnsupportedAmount, match="razorpay takes BHD amounts in multiples of 10"):
        to_provider("razorpay", 99991, "bhd")
    assert to_provider("mock", 1005, "KWD") == 1005


def test_isk_and_ugx_are_whole_units_written_with_two_decimals_on_stripe() -> None:
    assert to_provider("stripe", 500, "ISK") == 50000
    assert from_provider("stripe", 50000, "ISK") == 500
    assert to_provider("stripe", 5, "ugx") == 500
    assert from_provider("stripe", 500, "UGX") == 5
    with pytest.raises(UnsupportedAmount, match="not a whole number of ISK minor units"):
        from_provider("stripe", 50050, "ISK")
    # Razorpay writes them as ISO does.
    assert to_provider("razorpay", 500, "ISK") == 500


def test_huf_and_twd_charges_keep_two_decimals_on_stripe() -> None:
    assert to_provider("stripe", 1045, "HUF") == 1045
    assert to_provider("stripe", 80045, "TWD") == 80045


def test_mga_is_zero_decimal_on_stripe_though_iso_gives_two_decimals() -> None:
    assert to_provider("stripe", 12300, "MGA") == 123
    assert from_provider("stripe", 123, "MGA") == 12300
    with pytest.raises(UnsupportedAmount, match="stripe takes MGA amounts in multiples of 100"):
        to_provider("stripe", 12345, "MGA")
    assert to_provider("razorpay", 12345, "MGA") == 12345


def test_unsupported_currencies_are_refused_in_words() -> None:
    with pytest.raises(UnsupportedAmount) as refused:
        to_provider("stripe", 100, "xyz")
    assert str(refused.value) == "stripe does not support the currency XYZ"
    # Stripe takes AFN, Razorpay does not; Razorpay takes BTN, Stripe does not.
    assert to_provider("stripe", 100, "AFN") == 100
    with pytest.raises(UnsupportedAmount, match="razorpay does not support the currency AFN"):
        to_provider("razorpay", 100, "AFN")
    assert to_provider("razorpay", 100, "BTN") == 100
    with pytest.raises(UnsupportedAmount, match="stripe does not support the currency BTN"):
        from_provider("stripe", 100, "BTN")
    with pytest.raises(UnsupportedAmount, match="mock does not support the currency XAU"):
        to_provider("mock", 100, "XAU")
    with pytest.raises(UnsupportedAmount):
        provider_currency("razorpay", "LYD")


def test_unknown_provider_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown payment provider 'paypal'"):
        to_provider("paypal", 100, "USD")


def test_provider_currency_spelling() -> None:
    assert provider_currency("stripe", "USD") == "usd"
    assert provider_currency("razorpay", "usd") == "USD"
    assert provider_currency("mock", "eur") == "EUR"


@given(pair=st.sampled_from(PAIRS), amount=st.integers(min_value=0, max_value=10**15))
def test_round_trip_of_every_expressible_amount(pair: tuple[str, str], amount: int) -> None:
    provider, code = pair
    try:
        theirs = to_provider(provider, amount, code)
    except UnsupportedAmount:
        assume(False)
    assert from_provider(provider, theirs, code) == amount
    assert from_provider(provider, theirs, code.lower()) == amount


@given(pair=st.sampled_from(PAIRS), amount=st.integers(min_value=0, max_value=10**15))
def test_whole_major_units_are_always_expressible(pair: tuple[str, str], amount: int) -> None:
    provider, code = pair
    whole = amount * 10 ** ISO_4217[code]
    assert from_provider(provider, to_provider(provider, whole, code), code) == whole
