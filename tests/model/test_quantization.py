"""4-bit loading arguments: each rank's own GPU, and the run's precision as the compute dtype (no GPU)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from glue_lora.model.quantization import RunDevice, quantized_loading_kwargs
from glue_lora.utils.ranks import local_rank


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [
        ("16-mixed", torch.float16),
        ("bf16-mixed", torch.bfloat16),
        ("32-true", torch.float32),
        ("64-true", torch.float32),
    ],
)
def test_the_4bit_compute_dtype_follows_the_run_precision(precision, dtype):
    kwargs = quantized_loading_kwargs(RunDevice(precision, 1), env={})
    config = kwargs["quantization_config"]
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_compute_dtype == dtype


def test_each_ddp_rank_loads_its_4bit_model_on_its_own_gpu():
    eight = RunDevice("16-mixed", 8)
    assert quantized_loading_kwargs(eight, env={})["device_map"] == {"": 0}  # rank 0 (no launcher yet)
    assert quantized_loading_kwargs(eight, env={"LOCAL_RANK": "5"})["device_map"] == {
        "": 5
    }  # Lightning, torchrun
    assert quantized_loading_kwargs(eight, env={"SLURM_LOCALID": "3"})["device_map"] == {"": 3}  # srun
    # trainer.devices=[2,3]: Lightning gives local rank 1 the second entry
    listed = RunDevice("16-mixed", OmegaConf.create({"d": [2, 3]}).d)
    assert quantized_loading_kwargs(listed, env={"LOCAL_RANK": "1"})["device_map"] == {"": 3}
    assert RunDevice("16-mixed", "4,6").cuda_device({"LOCAL_RANK": "1"}) == 6


def test_local_rank_prefers_the_launchers_variable():
    assert local_rank({}) == 0
    assert local_rank({"LOCAL_RANK": "2", "SLURM_LOCALID": "7"}) == 2
    assert local_rank({"LOCAL_RANK": "", "SLURM_LOCALID": "7"}) == 7


def test_the_backbone_is_loaded_with_them(monkeypatch):
    from transformers import AutoModelForSequenceClassification

    from glue_lora.model import backbone
    from tests.helpers.runs import compose_train

    seen = {}

    def from_pretrained(source, **kwargs):
        seen.update(kwargs)
        raise LookupError("stop here")

    monkeypatch.setattr(backbone, "check_quantization", lambda model_cfg: True)  # as on a GPU
    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", from_pretrained)
    monkeypatch.setenv("LOCAL_RANK", "3")
    model_cfg = OmegaConf.to_container(compose_train(["model.quantize=4bit"]).model, resolve=True)
    with pytest.raises(LookupError):
        backbone.build_backbone(model_cfg, 2, run=RunDevice("16-mixed", 8))
    assert seen["device_map"] == {"": 3}
    assert seen["quantization_config"].bnb_4bit_compute_dtype == torch.float16
