import pytest

from glue_lora.utils.ranks import is_rank_zero


@pytest.mark.parametrize(
    ("env", "zero"),
    [
        ({}, True),
        ({"LOCAL_RANK": "0"}, True),
        ({"LOCAL_RANK": "1"}, False),  # Lightning's relaunched rank
        ({"RANK": "3", "LOCAL_RANK": "3"}, False),  # torchrun
        ({"SLURM_PROCID": "5"}, False),  # srun
        ({"SLURM_PROCID": "0", "LOCAL_RANK": "0"}, True),
        ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False),  # rank 0 of the second node
    ],
)
def test_every_launcher_names_its_rank(env: dict[str, str], zero: bool) -> None:
    assert is_rank_zero(env) is zero
