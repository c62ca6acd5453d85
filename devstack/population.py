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
