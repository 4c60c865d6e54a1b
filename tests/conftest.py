import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # the gmm helper

from gmm import GaussianMixture  # noqa: E402

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture
def gmm():
    """Three well separated 2-D Gaussians with unequal weights."""
    return GaussianMixture([0.2, 0.3, 0.5], [[-0.6, -0.5], [0.6, -0.4], [0.0, 0.6]], [0.1, 0.15, 0.08])
