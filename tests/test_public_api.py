"""The top-level API: every public name resolves from ``dtm`` to the object its module defines, and importing
``dtm`` (or a config) does not import torch."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import dtm


@pytest.mark.parametrize("name", dtm.__all__)
def test_top_level_names_are_the_module_objects(name):
    module = importlib.import_module(dtm._api()[name])
    assert getattr(dtm, name) is getattr(module, name)


def test_unknown_top_level_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'DTMConfigg'"):
        dtm.DTMConfigg  # noqa: B018


def test_importing_dtm_and_its_configs_leaves_torch_unloaded():
    code = "import sys, dtm\nfrom dtm import DTMConfig, WD1Config, load_config\nprint('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
