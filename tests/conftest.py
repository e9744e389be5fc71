import pytest
import torch

torch.set_num_threads(
    1
)  # the tests use small tensors: one thread is fastest and steadiest on a busy machine


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
