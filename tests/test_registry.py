"""One lookup for every registry: the valid names and the closest one in the error."""

from __future__ import annotations

import pytest

from brstnet.models.backbones import backbone_spec
from brstnet.registry import lookup, unknown_name
from brstnet.st.errors import DataError
from brstnet.st.readers import datasets, get_layout


def test_a_known_name_is_found_and_an_unknown_one_is_named_with_the_valid_ones() -> None:
    registry = {"b": 2, "a": 1}
    assert lookup(registry, "a", "letter") == 1
    with pytest.raises(ValueError) as err:
        lookup(registry, "c", "letter")
    assert str(err.value) == "unknown letter 'c'; use one of b, a"
    with pytest.raises(KeyError, match=r"use one of a, b \(setting.x\)"):
        lookup(registry, "c", "letter", where="setting.x", error=KeyError, sort=True)
    assert unknown_name("resnt18", ["resnet18", "vit"], "backbone") == (
        "unknown backbone 'resnt18' (did you mean resnet18?); use one of resnet18, vit"
    )


def test_the_registries_use_it() -> None:
    with pytest.raises(
        ValueError, match=r"unknown backbone 'resnet5O' \(did you mean resnet50\?\)"
    ):
        backbone_spec("resnet5O")
    with pytest.raises(DataError, match=r"unknown dataset 'visum' \(did you mean visium\?\); use"):
        get_layout("visum")


def test_the_published_layouts_are_built_in_with_their_spot_pitch() -> None:
    """ST arrays (her2st, He et al. 2020) at 200 um, Visium (Space Ranger, HEST-1k) at
    100 um, registered first and in this order."""
    built_in = ("her2st", "he2020", "visium", "hest")
    assert datasets()[:4] == built_in
    assert [get_layout(n).spot_pitch_um for n in built_in] == [200, 200, 100, 100]
