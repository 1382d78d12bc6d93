"""Money amounts per ISO 4217 and per payment provider.

The CONTRACT says amounts are integers in minor units with an ISO 4217 currency: the minor unit
is the one ISO 4217 gives the currency (JPY 0 decimals, USD 2, KWD 3). Providers take amounts in
their own units, which mostly but not always agree; this module converts both ways and refuses,
with a reason fit for a payment.failed event, what a provider cannot take.

Sources, one per table:
- ISO_4217: ISO 4217 list one as its maintenance agency SIX publishes it (edition of 2026-01-01),
  https://www.six-group.com/dam/download/financial-information/data-center/iso-currrency/lists/list-one.xml
- STRIPE_CURRENCIES and Stripe's zero-decimal, three-decimal and special-case rules:
  https://docs.stripe.com/currencies
- RAZORPAY_CURRENCIES (with each currency's exponent):
  https://razorpay.com/docs/payments/international-payments/#supported-currencies
  and its three-decimal rule ("pass the last decimal number as 0"):
  https://razorpay.com/docs/api/orders/create/

Minimum and maximum charge amounts (Stripe's per settlement currency, Razorpay's INR 1.00) are not
enforced here: they depend on the account, and the provider answers with its own error, which
the worker reports as the payment's failure reason.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from math import gcd
from types import MappingProxyType


def _codes(text: str) -> frozenset[str]:
    """The currency codes in a whitespace-separated list."""
    return frozenset(text.split())


_ISO_BY_EXPONENT = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    2: """
        AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
        CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
        GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK
        LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO
        NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS
        SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST
        XAD XCD XCG YER ZAR ZMW ZWG
    """,
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}
# Every code of list one with a minor unit, funds codes included (CLF, UYW, BOV...). Left out:
# codes whose minor unit ISO gives as "N.A." (XAU, XAG, XPT, XPD, XDR, XSU, XUA, XBA..XBD, XTS,
# XXX) and codes no longer on the list (ANG since XCG, BGN since the euro, CUC, HRK, SLL, ZWL).
ISO_4217: Mapping[str, int] = MappingProxyType(
    {code: exp for exp, codes in _ISO_BY_EXPONENT.items() for code in _codes(codes)}
)

# Stripe's "Supported presentment currencies" (all account countries together) that are active
# ISO codes. Stripe also lists ANG and STD, which ISO 4217 no longer does (XCG replaced ANG, and
# STN is STD redenominated 1000:1); with no way to tell which unit Stripe means by "std", both are
# left out rather than guessed. BGN left the ISO list too. The three-decimal currencies appear only
# for some account countries (e.g. the United Arab Emirates); whether an account may charge a
# currency is Stripe's to answer.
STRIPE_CURRENCIES: frozenset[str] = _codes(
    """
    USD AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BRL BSD BWP BYN BZD
    CAD CDF CHF CLP CNY COP CRC CVE CZK DJF DKK DOP DZD EGP ETB EUR FJD FKP GBP GEL GIP GMD GNF
    GTQ GYD HKD HNL HTG HUF IDR ILS INR ISK JMD JOD JPY KES KGS KHR KMF KRW KWD KYD KZT LAK LBP
    LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR
    PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SEK SGD SHP SLE SOS SRD SZL THB
    TJS TND TOP TRY TTD TWD TZS UAH UGX UYU UZS VND VUV WST XAF XCD XOF XPF YER ZAR ZMW
    """
)
# Stripe's "Zero-decimal currencies": the amount is whole units. Stripe lists UGX here too, but
# its "Special cases" say UGX, like ISK, is written as a two-decimal value whose decimals are
# always 00 (5 UGX is 500): that more specific rule is the one followed. MGA is zero-decimal on
# Stripe though ISO 4217 gives it 2 decimals, so only whole ariary can be charged.
_STRIPE_ZERO_DECIMAL = _codes("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF VND VUV XAF XOF XPF")
# "Three-decimal currencies": the last digit must be 0. This section is in Stripe's page as
# rendered for three-decimal countries and in its earlier editions, not in every current render;
# the rule is kept, being the conservative reading.
_STRIPE_THREE_DECIMAL = _codes("BHD JOD KWD OMR TND")
# "Special cases": ISK and UGX are two-decimal in the API with the decimals always 00. HUF and
# TWD are special only for payouts (whole units); charges take two-decimal amounts, as ISO's.
_STRIPE_WHOLE_UNITS_IN_CENTS = _codes("ISK UGX")

# Razorpay's "Supported Currencies" that are active ISO codes (it also lists BGN, HRK and SLL,
# which ISO no longer does; SLE, the redenominated leone, is not listed). Razorpay's table gives
# each currency's exponent, the same as ISO 4217's for every code here (ISK 0, MGA 2, IQD 3).
RAZORPAY_CURRENCIES: frozenset[str] = _codes(
    """
    AED ALL AMD AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BRL BSD BTN BWP BZD CAD CHF CLP CNY
    COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ETB EUR FJD GBP GHS GIP GMD GNF GTQ GYD HKD HNL HTG
    HUF IDR ILS INR IQD ISK JMD JOD JPY KES KGS KHR KMF KRW KWD KYD KZT LAK LKR LRD LSL MAD MDL
    MGA MKD MMK MNT MOP MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PEN PGK PHP PKR PLN
    PYG QAR RON RSD RUB RWF SAR SCR SEK SGD SOS SVC SZL THB TND TRY TTD TWD TZS UAH UGX USD UYU
    UZS VND VUV XAF XCD XOF XPF YER ZAR ZMW
    """
)
# Razorpay asks that three-decimal amounts end in 0 ("99.991 KD ... pass 99990 and not 99991");
# one of its pages shows 99.999 KD passed as 99999, so the stricter rule is the one kept.

_SUPPORTED: Mapping[str, Collection[str]] = MappingProxyType(
    {"mock": ISO_4217.keys(), "stripe": STRIPE_CURRENCIES, "razorpay": RAZORPAY_CURRENCIES}
)


class UnsupportedAmount(ValueError):
    """A provider cannot take this currency or amount; the message is the reason, in words."""


def is_iso_currency(code: str) -> bool:
    """Whether code (any case) is an active ISO 4217 currency with a minor unit."""
    return code.upper() in ISO_4217


def iso_exponent(code: str) -> int:
    """The number of decimals ISO 4217 gives the currency; ValueError for an unknown code."""
    try:
        return ISO_4217[code.upper()]
    except KeyError:
        raise ValueError(f"{code!r} is not an active ISO 4217 currency code") from None


def _supported(provider: str, currency: str) -> str:
    """The upper-case code, once the provider is known and supports the currency."""
    supported = _SUPPORTED.get(provider)
    if supported is None:
        raise ValueError(f"unknown payment provider {provider!r}")
    code = currency.upper()
    if code not in supported:
        raise UnsupportedAmount(f"{provider} does not support the currency {code}")
    return code


def _units(provider: str, code: str) -> tuple[int, int]:
    """The provider's decimals for code, and the multiple its amounts must be (in its units)."""
    if provider == "stripe":
        if code in _STRIPE_ZERO_DECIMAL:
            return 0, 1
        if code in _STRIPE_THREE_DECIMAL:
            return 3, 10
        if code in _STRIPE_WHOLE_UNITS_IN_CENTS:
            return 2, 100
        return 2, 1
    exponent = ISO_4217[code]
    return exponent, 10 if provider == "razorpay" and exponent == 3 else 1


def to_provider(provider: str, amount: int, currency: str) -> int:
    """Our ISO minor units as the provider's amount; UnsupportedAmount if it cannot take them."""
    code = _supported(provider, currency)
    exponent, step = _units(provider, code)
    shift = exponent - ISO_4217[code]
    factor: int = 10 ** abs(shift)
    # The multiple our amount must be for the provider's to be whole and a multiple of step.
    multiple = step // gcd(step, factor) if shift >= 0 else factor * step
    if amount % multiple:
        why = (
            "three-decimal currency"
            if shift == 0
            else f"{provider} writes {code} with {exponent} decimals, not {ISO_4217[code]}"
        )
        raise UnsupportedAmount(
            f"{provider} takes {code} amounts in multiples of {multiple} ({why}); {amount} is not"
        )
    return amount * factor if shift >= 0 else amount // factor


def from_provider(provider: str, amount: int, currency: str) -> int:
    """A provider's amount (a webhook's) in our ISO minor units; UnsupportedAmount if inexact.

    The provider's own multiple-of rules are not checked here: what it reports is what happened.
    """
    code = _supported(provider, currency)
    shift = _units(provider, code)[0] - ISO_4217[code]
    factor: int = 10 ** abs(shift)
    if shift <= 0:
        return amount * factor
    if amount % factor:
        raise UnsupportedAmount(
            f"{provider} reported {amount} in {code}, which is not a whole number of "
            f"{code} minor units"
        )
    return amount // factor


def provider_currency(provider: str, currency: str) -> str:
    """The code as the provider writes it (Stripe lower case, the others upper case)."""
    code = _supported(provider, currency)
    return code.lower() if provider == "stripe" else code
