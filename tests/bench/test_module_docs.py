"""The examples in the docstrings of the pure bench modules hold."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "asgiscale.bench.histogram",
        "asgiscale.bench.objective",
        "asgiscale.bench.search",
        "asgiscale.bench.recommend",
    ],
)
def test_the_examples_in_the_module_docs_hold(module: str) -> None:
    results = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert results.attempted > 0
    assert results.failed == 0
