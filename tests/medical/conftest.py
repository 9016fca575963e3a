from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest

from deepseek.medical.synthetic import write_phantom

#: pydicom's bundled sample files, opened by path (its download helpers are never called)
PYDICOM_FILES = Path(os.path.dirname(pydicom.__file__)) / "data" / "test_files"

SMALL = dict(size=64, slices=20, slice_step=3.0, n_nodules=3, seed=11)


@pytest.fixture(scope="session")
def phantom_factory(tmp_path_factory):
    """Write a small phantom series once per distinct option set."""
    cache: dict = {}

    def make(**options):
        opts = {**SMALL, **options}
        key = tuple(sorted(opts.items()))
        if key not in cache:
            out = tmp_path_factory.mktemp("phantom")
            cache[key] = write_phantom(out, **opts)
        return cache[key]

    return make


@pytest.fixture
def plain(phantom_factory):
    return phantom_factory()
