"""The commodity catalogue knows the national panel's consumer list as the panel writes it, in any case and
spacing, and never lets two items share a name."""

from __future__ import annotations

import pytest

from hub.markets.catalog import COMMODITIES, find_commodity, name_key
from hub.markets.units import unit_of

PANEL_LIST = (
    "Beras Premium", "Beras Medium", "Beras SPHP", "Jagung Tk Peternak", "Kedelai Biji Kering (Impor)",
    "Bawang Merah", "Bawang Putih Bonggol", "Cabai Merah Keriting", "Cabai Merah Besar", "Cabai Rawit Merah",
    "Daging Sapi Murni", "Daging Ayam Ras", "Daging Kerbau Beku (Impor Luar Negeri)",
    "Daging Kerbau Segar (Lokal)", "Telur Ayam Ras", "Gula Konsumsi", "Minyak Goreng Kemasan",
    "Minyak Goreng Curah", "Minyakita", "Tepung Terigu (Curah)", "Tepung Terigu Kemasan", "Ikan Kembung",
    "Ikan Tongkol", "Ikan Bandeng", "Garam Konsumsi",
)


def test_every_panel_item_is_its_own_catalogue_entry() -> None:
    found = [find_commodity(name) for name in PANEL_LIST]
    assert all(c is not None for c in found), [n for n, c in zip(PANEL_LIST, found, strict=True) if c is None]
    assert len({c.id for c in found if c is not None}) == len(PANEL_LIST)
    for name, c in zip(PANEL_LIST, found, strict=True):
        assert c is not None and c.name == name


@pytest.mark.parametrize("spelled", ["cabai merah keriting", "CABAI  MERAH KERITING", " Cabai Merah\tKeriting ",
                                     "cabai-merah"])
def test_case_and_spacing_do_not_count(spelled: str) -> None:
    c = find_commodity(spelled)
    assert c is not None and c.id == "cabai-merah"


def test_distinct_items_are_never_merged() -> None:
    assert find_commodity("Cabai Merah Besar").id != find_commodity("Cabai Merah Keriting").id
    assert find_commodity("Minyak Goreng Curah").id != find_commodity("Minyakita").id
    assert find_commodity("Minyak Goreng Kemasan").id != find_commodity("Minyakita").id
    assert find_commodity("durian") is None and find_commodity("cabai") is None
    keys = [k for c in COMMODITIES for k in {name_key(t) for t in (c.id, c.name, *c.aliases)}]
    assert len(keys) == len(set(keys))


def test_units_as_the_agency_writes_them() -> None:
    assert [unit_of(u) for u in ("Rp./Kg", "Rp/kg", "Rp./Liter", "kg", "L", "Rp./Ons")] == [
        "kg", "kg", "liter", "kg", "liter", "kg"]
