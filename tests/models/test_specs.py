"""The backbone registry is plain data; the builder resolves the layers it names."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from timm.layers import SwiGLUPacked
from torch import nn

from brstnet.models.layers import LAYERS, timm_kwargs
from brstnet.models.specs import BACKBONES, backbone_spec


def test_every_spec_is_plain_data() -> None:
    for name, spec in BACKBONES.items():
        json.dumps(spec.kwargs)  # no classes or callables: a spec can be written anywhere
        assert "." not in name


def test_the_registry_and_the_parameters_load_without_torch() -> None:
    code = (
        "import sys; import brstnet.models.specs, brstnet.config; "
        "print('torch' in sys.modules, 'timm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_named_layers_resolve_to_the_model_cards_layers() -> None:
    virchow = timm_kwargs(backbone_spec("virchow2").kwargs)
    assert virchow["mlp_layer"] is SwiGLUPacked and virchow["act_layer"] is nn.SiLU
    assert virchow["reg_tokens"] == 4  # other arguments untouched
    norm = timm_kwargs(backbone_spec("phikon").kwargs)["norm_layer"](8)
    assert isinstance(norm, nn.LayerNorm) and norm.eps == 1e-12
    with pytest.raises(KeyError):
        timm_kwargs({"act_layer": "not_a_layer"})
    named = {v for s in BACKBONES.values() for k, v in s.kwargs.items() if k.endswith("_layer")}
    assert named <= set(LAYERS)
