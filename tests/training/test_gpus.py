"""One GPU per job in a sweep on a multi-GPU machine: the assignment logic, without GPUs."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from glue_lora.model.data_driven_starts import computes_start
from glue_lora.settings.method import method_settings
from glue_lora.training import gpus
from tests.helpers.runs import CONF, compose_train


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    monkeypatch.setattr(gpus, "_claimed", None)  # as a new worker process


def test_visible_gpus_from_the_environment_or_the_driver(tmp_path):
    assert gpus.visible_gpus({"CUDA_VISIBLE_DEVICES": "0,2, 3"}) == ["0", "2", "3"]
    assert gpus.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert gpus.visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    for bus in ("0000:01:00.0", "0000:41:00.0"):
        (tmp_path / bus).mkdir()
    assert gpus.visible_gpus({}, proc_gpus=tmp_path) == ["0", "1"]
    assert gpus.visible_gpus({}, proc_gpus=tmp_path / "none") == []


def test_job_k_tries_gpu_k_mod_n_first():
    assert [gpus.device_order(k, 4)[0] for k in range(6)] == [0, 1, 2, 3, 0, 1]
    assert gpus.device_order(5, 4) == [1, 2, 3, 0]


def test_each_running_job_gets_its_own_gpu_and_a_freed_one_is_reused(tmp_path):
    ids = ["0", "1", "2"]
    held = [gpus.claim_gpu(ids, k, tmp_path) for k in range(3)]
    assert [gpu for gpu, _ in held] == ["0", "1", "2"]
    assert gpus.claim_gpu(ids, 3, tmp_path) is None  # every GPU busy
    held[1][1].close()  # job 1 ends (its process exits)
    gpu, _ = gpus.claim_gpu(ids, 4, tmp_path)  # job 4 would start on GPU 1 anyway
    assert gpu == "1"
    held[0][1].close()
    gpu, _ = gpus.claim_gpu(ids, 5, tmp_path)  # job 5's own (GPU 2) is busy: the free one
    assert gpu == "0"


def test_pin_sets_cuda_visible_devices_once_per_process(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}
    assert gpus.pin_job_to_gpu(2, env, tmp_path) == "6"
    assert env["CUDA_VISIBLE_DEVICES"] == "6"
    # a later job in the same worker keeps that GPU: CUDA reads the variable once per process
    assert gpus.pin_job_to_gpu(3, env, tmp_path) == "6"


def test_pin_leaves_a_single_gpu_or_cpu_machine_alone(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "3"}  # e.g. a SLURM job given one GPU
    assert gpus.pin_job_to_gpu(1, env, tmp_path) is None
    assert env == {"CUDA_VISIBLE_DEVICES": "3"}
    assert gpus.pin_job_to_gpu(1, {"CUDA_VISIBLE_DEVICES": ""}, tmp_path) is None


def test_more_jobs_than_gpus_share_round_robin(tmp_path):
    other = gpus.claim_gpu(["0", "1"], 0, tmp_path), gpus.claim_gpu(["0", "1"], 1, tmp_path)
    env = {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert gpus.pin_job_to_gpu(3, env, tmp_path) == "1"
    assert all(o is not None for o in other)


def test_the_callback_is_on_in_every_run():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["hydra/launcher=joblib"], return_hydra_config=True)
    callback = cfg.hydra.callbacks.gpu_per_job
    assert callback._target_ == "glue_lora.training.hydra_callbacks.OneGpuPerJob" and callback.enabled


@pytest.mark.parametrize(
    ("trainer", "env", "device"),
    [
        ({"accelerator": "gpu", "devices": 8}, {"LOCAL_RANK": "3"}, "cuda:3"),
        ({"accelerator": "auto", "devices": -1}, {"SLURM_LOCALID": "5"}, "cuda:5"),  # srun
        ({"accelerator": "gpu", "devices": [2, 3]}, {"LOCAL_RANK": "1"}, "cuda:3"),
        ({"accelerator": "gpu", "devices": "2,3"}, {}, "cuda:2"),
        ({"accelerator": "cpu", "devices": 2}, {"LOCAL_RANK": "1"}, None),
    ],
)
def test_a_computed_start_runs_on_the_ranks_own_gpu(trainer, env, device):
    assert gpus.rank_device(trainer, env, cuda=True) == device
    assert gpus.rank_device(trainer, env, cuda=False) is None  # no GPU: the CPU, as before


@pytest.mark.parametrize(
    ("method", "computed"),
    [("pissa", True), ("olora", True), ("eva", True), ("corda", True), ("lora_ga", True), ("lora", False)],
)
def test_which_starts_are_computed(method, computed):
    cfg = compose_train([f"method={method}"])
    assert computes_start(method_settings(cfg.method, cfg.lora)) is computed
