"""The values scenarios draw: ids, free text, students, amounts, currencies, roles."""

from __future__ import annotations

from hypothesis import strategies as st

from tests.faults.hostile.model import COIN_MAX, COURSE_REWARD, JSON_SAFE_MAX, REFERRAL_REWARD

# Ids: unique by a prefix that ends at its first ":", then short, non-ASCII or 128 characters.
CONTROL = "".join(map(chr, [*range(0x20), 0x7F]))
SAFE = st.characters(codec="utf-8", exclude_characters=CONTROL)  # no control, no surrogate

# A pool of students any scenario may pick, so that conflicts, overflows and insufficient
# balances really happen; each is an extreme of what an id may be.
POOL = (
    "s",
    "S" * 128,
    "ü" * 128,
    "😀" * 128,  # 128 characters, 512 UTF-8 bytes
    "学生" + "漢" * 126,
    "a\u0085b\u2028c\u2029d\ufeffe\u200bf\u202eg\u00a0h",  # C1 NEL and other invisible ones
    "'; DROP TABLE coin_wallets; --",
    '"quoted" \\u0000 \\',
    "e\u0301",  # decomposed: not the same student as the next one
    "\u00e9",
    "\U0010fffd\uffff\ufffd",
    " ",
)


def ids(prefix: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(prefix),
        st.text(SAFE, min_size=1, max_size=8).map(lambda t: prefix + t),
        st.text(SAFE, min_size=1, max_size=3).map(lambda t: (prefix + t * 128)[:128]),
    )


def texts(max_size: int = 1000) -> st.SearchStrategy[str]:
    """Free text (a reason, an item): empty, short, or exactly `max_size` characters."""
    return st.one_of(
        st.just(""),
        st.text(SAFE, min_size=1, max_size=6),
        st.text(SAFE, min_size=1, max_size=3).map(lambda t: (t * max_size)[:max_size]),
    )


class Names:
    """Unique id prefixes within one scenario (its tag makes them unique in the stream)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.count = 0

    def __call__(self, what: str) -> str:
        self.count += 1
        return f"{self.tag}.{what}{self.count}:"


def students(names: Names) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(POOL), ids(names("s")))


# Amounts: the extremes the CONTRACT names, often, and anything in between.
EXTREMES = (1, COIN_MAX, COIN_MAX + 1, JSON_SAFE_MAX)
coin_amounts = st.one_of(
    st.sampled_from([*EXTREMES, *EXTREMES, COURSE_REWARD, REFERRAL_REWARD]),
    st.integers(1, COIN_MAX),
)
money = st.one_of(st.sampled_from([1, 49_900, JSON_SAFE_MAX]), st.integers(1, JSON_SAFE_MAX))
currencies = st.sampled_from(["INR", "inr", "Usd", "EUR", "JPY"])
ROLES_NOT_ADMIN = ("student", "Admin", "ADMIN", "admin ", " admin", "", "админ", "service")
roles = st.one_of(st.just("admin"), st.sampled_from(ROLES_NOT_ADMIN))
