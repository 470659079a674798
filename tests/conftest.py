import os

import pytest
import torch

from nanopref.common import DATA_DIR


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (none here); the CPU path is tested elsewhere")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def data_file():
    """data_file('gsm8k', 'test.jsonl') -> path under NANOPREF_DATA, or skip saying what is missing."""
    def get(*parts):
        path = os.path.join(DATA_DIR, *parts)
        if not os.path.exists(path):
            pytest.skip(f"real data file {path} not found (set NANOPREF_DATA to the shared data directory)")
        return path
    return get
