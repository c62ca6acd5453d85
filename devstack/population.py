"""Deterministic fake customer lists shaped exactly like Partner Center ``GET /v1/customers`` items."""

from __future__ import annotations

import gc
import random
from typing import Any

RELATIONSHIPS = ("reseller", "reseller", "reseller", "advisor", "none", "syndication", "microsoft_support")

# fmt: off
# Names deliberately include non-ASCII, apostrophes, ampersands and emoji: snapshots must round-trip them.
_STEMS = (
    "Contoso", "Fabrikam", "Northwind", "Adventure Works", "Tailspin", "Wingtip", "Litware", "Proseware",
    "Müller & Söhne", "Société Générale d'Études", "東京商事", "Ørsted Þjónusta", "Zürich Straße",
    "Łódź Tech", "Ångström Labs", "Crème Brûlée Café", "São Paulo Comércio", "Dvořák & Synové",
    "Őrség Kft", "Çelik Ağ", "Αθήνα Λογισμικό", "Москва Софт", "서울 데이터", "مؤسسة الرياض",
    "Blue Yonder 🚀", "Green Leaf 🌱",
)
_SUFFIXES = (
    "GmbH", "AG", "Ltd", "Inc.", "S.A.", "SARL", "株式会社", "ehf.", "Sp. z o.o.", "LLC", "s.r.o.", "A.Ş.",
)
# Domain stems, one per name stem: mostly ASCII; a few unicode (IDN-style) ones. An index suffix keeps
# every domain unique.
_SLUGS = (
    "contoso", "fabrikam", "northwind", "adventureworks", "tailspin", "wingtip", "litware", "proseware",
    "mullersohne", "socgen-etudes", "tokyoshoji", "orsted", "zurichstrasse", "lodztech", "angstrom",
    "cremebrulee", "saopaulo", "dvorak", "orseg", "celik", "athina", "moskvasoft", "seouldata", "riyadh",
    "blueyonder", "greenleaf",
)
_IDN_SLUGS = ("müller-söhne", "société-études", "東京商事", "ørsted-þjónusta", "zürich-straße", "łódź")
_IDN_TLDS = (".de", ".fr", ".jp", ".is", ".ch", ".pl")
_TAGS = (["priority"], ["csp", "managed"], ["education"], ["nonprofit", "tier-2"])
# fmt: on


def _guid(bits: int) -> str:
    h = f"{bits:032x}"
    # Version 4 / RFC 4122 variant like real tenant ids, without building uuid.UUID objects (speed).
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def make_customers(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` unique customers; identical output for the same (count, seed) on every run and machine."""
    # Millions of small dicts trigger the cyclic GC over and over (4x slower); none of them can form cycles.
    gc_enabled = gc.isenabled()
    gc.disable()
    try:
        return _generate(count, seed)
    finally:
        if gc_enabled:
            gc.enable()


def _generate(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rand, bits, choice = rng.random, rng.getrandbits, rng.choice
    partner_id = _guid(bits(128))
    customers: list[dict[str, Any]] = []
    append = customers.append
    for i in range(count):
        tenant_id = _guid(bits(128))
        stem_index = int(rand() * len(_STEMS))
        name = f"{_STEMS[stem_index]} {choice(_SUFFIXES)}"
        if rand() < 0.02:
            idn = int(rand() * len(_IDN_SLUGS))
            domain = f"{_IDN_SLUGS[idn]}-{i}{_IDN_TLDS[idn]}"
        else:
            domain = f"{_SLUGS[stem_index]}{i}.onmicrosoft.com"
        self_uri = f"/customers/{tenant_id}"
        item: dict[str, Any] = {
            "id": tenant_id,
            "companyProfile": {
                "tenantId": tenant_id,
                "domain": domain,
                "companyName": name,
                "links": {"self": {"uri": f"{self_uri}/profiles/company", "method": "GET", "headers": []}},
                "attributes": {"objectType": "CustomerCompanyProfile"},
            },
            "relationshipToPartner": choice(RELATIONSHIPS),
            "links": {"self": {"uri": self_uri, "method": "GET", "headers": []}},
            "attributes": {"objectType": "Customer"},
        }
        roll = rand()
        if roll < 0.6:
            item["commerceId"] = _guid(bits(128))
        if roll < 0.15:
            item["associatedPartnerId"] = partner_id
        if roll > 0.9:
            item["tags"] = list(choice(_TAGS))
        if roll > 0.97:
            item["allowDelegatedAccess"] = True  # an undocumented extra field: snapshots must keep it
        append(item)
    return customers


def crc32_colliding_ids(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct GUID-shaped ids whose CRC-32 is the same: keys an attacker could choose so that a
    table slotted by CRC-32 bits (the lookup index before format 3) puts every one in the same slot.

    CRC-32 is affine over GF(2): for strings of one length, crc(a ^ d) = crc(a) ^ crc(d ^ 0) ^ crc(0). Each
    hex digit kept within '0'-'7' leaves three bits free; any combination of those flips that lies in the
    kernel of the (linear) CRC difference keeps the CRC. About 84 free bits against 32: 2**52 such ids."""
    import zlib

    rng = random.Random(seed)
    base = bytearray(b"00000000-0000-4000-8000-000000000000")  # version 4, variant 8: fixed
    free = [
        (at, bit) for at, char in enumerate(base) if char == 0x30 and at not in (14, 19) for bit in (0, 1, 2)
    ]
    zero = zlib.crc32(base)
    kernel: list[int] = []  # combinations (bit masks over `free`) that leave the CRC unchanged
    pivots: dict[int, tuple[int, int]] = {}  # Gaussian elimination: top bit -> (CRC difference, combination)
    for number, (at, bit) in enumerate(free):
        flipped = bytearray(base)
        flipped[at] ^= 1 << bit
        difference, combination = zlib.crc32(flipped) ^ zero, 1 << number
        while difference and difference.bit_length() - 1 in pivots:
            other, other_combination = pivots[difference.bit_length() - 1]
            difference, combination = difference ^ other, combination ^ other_combination
        if difference:
            pivots[difference.bit_length() - 1] = (difference, combination)
        else:
            kernel.append(combination)
    ids: dict[str, None] = {}
    while len(ids) < count:
        combination = 0
        for vector in kernel:
            combination ^= vector if rng.getrandbits(1) else 0
        crafted = bytearray(base)
        for number, (at, bit) in enumerate(free):
            crafted[at] ^= (combination >> number & 1) << bit
        ids[crafted.decode()] = None
    return list(ids)
