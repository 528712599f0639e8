"""Faults a user meets: damaged adapter files, bytes that are not UTF-8, a full disk, a max_length the
model cannot read, no network. Each ends in one paragraph naming the file or setting and the fix."""

from __future__ import annotations

import errno
import json
import logging
import shutil
import time

import pytest
import torch

from glue_lora.adapters.loading import load_model
from glue_lora.adapters.merge import main as merge_main
from glue_lora.adapters.merge import merge_adapter
from glue_lora.adapters.predictor import Predictor
from glue_lora.data.reading import read_split_file, read_split_from_hub
from glue_lora.data.tasks import get_task
from glue_lora.train import run
from glue_lora.utils import artifacts, diskspace
from glue_lora.utils.errors import ConfigError, DataError, DiskFullError
from tests.helpers.adapters import make_adapter
from tests.helpers.glue_files import write_glue_task
from tests.helpers.runs import compose_tiny_run, compose_train, init_adapter_of, run_cli

DAMAGED = r"adapter_model\.safetensors is damaged and cannot be read .* Copy the adapter/ directory again"


@pytest.fixture
def damaged_adapter(tmp_path):
    """A tiny RTE adapter whose weights file lost its second half (a full disk, a broken copy)."""
    run_dir = make_adapter(tmp_path / "run", "rte")
    weights = run_dir / "adapter" / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return run_dir


def test_damaged_adapter_is_named_by_load_merge_predictor_and_init_adapter(damaged_adapter, tmp_path, capsys):
    with pytest.raises(DataError, match=DAMAGED):
        load_model(damaged_adapter)
    with pytest.raises(DataError, match=DAMAGED):
        Predictor(None, adapters={"rte": damaged_adapter})
    cfg = compose_train(
        ["model=tiny_roberta", "task=rte", f"init_adapter={damaged_adapter}"], tmp_path / "new"
    )
    with pytest.raises(DataError, match=DAMAGED):
        init_adapter_of(cfg)
    assert merge_main([str(damaged_adapter), str(tmp_path / "merged")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "is damaged" in err and "Traceback" not in err


def test_overwritten_merged_model_is_named(tmp_path):
    merged = merge_adapter(make_adapter(tmp_path / "run", "sst2"), tmp_path / "merged")
    (merged / "model.safetensors").write_bytes(b"not a safetensors file" * 10)
    with pytest.raises(DataError, match=r"model\.safetensors is damaged"):
        load_model(merged)


def test_eval_cli_on_a_damaged_adapter_exits_2_without_traceback(damaged_adapter, tmp_path):
    done = run_cli("eval.py", [f"adapter={damaged_adapter}", f"hydra.run.dir={tmp_path / 'eval'}"])
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error:" in done.stderr and "adapter_model.safetensors is damaged" in done.stderr
    assert "Traceback" not in done.stderr and "SafetensorError" not in done.stderr.split("(")[0]


# --- bytes that are not UTF-8 -------------------------------------------------------------------


@pytest.fixture
def latin1_train(tmp_path):
    """RTE's train.tsv with a Latin-1 byte (0xe9, é) in line 5."""
    write_glue_task(tmp_path, "RTE")
    path = tmp_path / "RTE" / "train.tsv"
    lines = path.read_bytes().split(b"\n")
    lines[4] = lines[4].replace(b"\t", b" caf\xe9\t", 1)
    path.write_bytes(b"\n".join(lines))
    return path


def test_non_utf8_byte_names_file_line_and_offset(latin1_train):
    offset = latin1_train.read_bytes().index(b"\xe9")
    with pytest.raises(
        DataError,
        match=rf"train\.tsv, line 5: byte 0xe9 at byte offset {offset} is not UTF-8.*skip_malformed_rows",
    ):
        read_split_file(get_task("rte"), latin1_train)


def test_skip_malformed_rows_skips_and_counts_non_utf8_rows(latin1_train, caplog):
    spec = get_task("rte")
    n_lines = len(latin1_train.read_bytes().strip().split(b"\n")) - 1  # minus the header
    with caplog.at_level(logging.WARNING):
        rows = read_split_file(spec, latin1_train, skip_malformed=True)
    assert len(rows["texts"]) == n_lines - 1
    assert "Skipped 1 malformed row(s)" in caplog.text
    assert not any("\udce9" in t for texts in rows["texts"] for t in texts)


# --- a full disk ----------------------------------------------------------------------------------


def fake_usage(free: int):
    return lambda path: shutil._ntuple_diskusage(10 * 2**30, 10 * 2**30 - free, free)


def test_full_disk_while_writing_json_names_file_free_and_needed_and_keeps_the_old_file(
    tmp_path, monkeypatch
):
    path = tmp_path / "results.json"
    artifacts.atomic_write_json(path, {"score": 0.5})

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifacts.os, "fsync", no_space)
    monkeypatch.setattr(shutil, "disk_usage", fake_usage(1234))
    with pytest.raises(
        DiskFullError, match=r"Could not write .*results\.json: the disk is full \(1\.2 KB free"
    ):
        artifacts.atomic_write_json(path, {"score": 0.9, "history": list(range(100))})
    assert json.loads(path.read_text()) == {"score": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left


def test_torch_enforce_fail_while_saving_a_checkpoint_is_a_disk_full_error(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    artifacts.atomic_torch_save({"w": torch.zeros(4)}, path)

    def enforce_fail(obj, handle):
        handle.write(b"x" * 100)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4608 vs 4496")

    monkeypatch.setattr(torch, "save", enforce_fail)
    monkeypatch.setattr(shutil, "disk_usage", fake_usage(0))
    big = {"w": torch.zeros(1024, 256)}  # 1 MB
    with pytest.raises(
        DiskFullError, match=r"last\.ckpt: the disk is full \(0 bytes free.*about 1\.0 MB needed"
    ):
        artifacts.atomic_torch_save(big, path)
    assert torch.load(path, weights_only=True)["w"].shape == (4,)


def test_full_disk_while_saving_the_adapter_keeps_the_previous_adapter(tmp_path, monkeypatch):
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "adapter_model.safetensors").write_bytes(b"old")

    class Full:
        def save_pretrained(self, path):
            (path / "adapter_model.safetensors").write_bytes(b"half")
            raise OSError("I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(shutil, "disk_usage", fake_usage(2**20))
    with pytest.raises(DiskFullError, match=r"Could not write .*adapter: the disk is full \(1\.0 MB free"):
        artifacts.atomic_save_pretrained(Full(), out)
    assert (out / "adapter_model.safetensors").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_training_warns_on_low_space_and_stops_cleanly_when_a_checkpoint_write_fails(
    glue_fixtures, token_cache, tmp_path, monkeypatch, caplog
):
    real_save = torch.save
    calls = []

    def fills_up(obj, handle):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
        real_save(obj, handle)

    monkeypatch.setattr(torch, "save", fills_up)
    monkeypatch.setattr(shutil, "disk_usage", fake_usage(2**20))
    cfg = compose_tiny_run(
        glue_fixtures, token_cache, tmp_path, ["task=rte", "checkpoint.every_n_train_steps=1"]
    )
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(DiskFullError, match=r"checkpoints/.*\.ckpt: the disk"),
    ):
        run(cfg)
    assert "Only 1.0 MB free where this run writes" in caplog.text
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 1
    assert not (tmp_path / "results.json").exists()


def test_run_bytes_counts_checkpoints_adapter_and_logs(tmp_path, monkeypatch):
    lora = diskspace.run_bytes(trainable=1_000_000, total=100_000_000, full_model_saved=False)
    full = diskspace.run_bytes(trainable=100_000_000, total=100_000_000, full_model_saved=True)
    assert lora == 3 * (3 * 4_000_000 + 2**16) + 2 * 4_000_000 + diskspace.LOG_BYTES
    assert full > 3.6e9  # three checkpoints of weights + AdamW state, two copies of the model
    monkeypatch.setattr(shutil, "disk_usage", fake_usage(10**12))
    assert not diskspace.warn_if_low(tmp_path / "not" / "yet", lora)


# --- max_length beyond the model's positions --------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "limit"),
    [("roberta_base", 512), ("minilm", 512), ("tiny_roberta", 513), ("deberta_v2_xxl", None)],
)
def test_max_length_beyond_the_models_positions_is_refused(model, limit, tmp_path):
    overrides = [f"model={model}", "model.pretrained=false", "dry_run=true"]
    if limit is None:  # relative positions only: no limit
        run(compose_train([*overrides, "data.max_length=4096"], tmp_path))
        return
    run(compose_train([*overrides, f"data.max_length={limit}"], tmp_path))
    with pytest.raises(ConfigError, match=rf"data\.max_length={limit + 1} exceeds .* hold {limit} tokens"):
        run(compose_train([*overrides, f"data.max_length={limit + 1}"], tmp_path))


def test_max_length_is_refused_before_training(glue_fixtures, token_cache, tmp_path):
    cfg = compose_tiny_run(glue_fixtures, token_cache, tmp_path, ["task=rte", "data.max_length=4096"])
    with pytest.raises(ConfigError, match=r"data\.max_length=4096 exceeds what model=tiny_roberta"):
        run(cfg)
    assert not (tmp_path / "checkpoints").exists()


# --- no network ------------------------------------------------------------------------------------


@pytest.fixture
def online(monkeypatch):
    """No offline switch set, as on a fresh machine; the Hub address a closed local port."""
    from glue_lora.utils.hub import PROXY_VARIABLES

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", *PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")


def test_unreachable_hub_fails_fast_without_calling_datasets(online, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("load_dataset was called"))
    start = time.monotonic()
    with pytest.raises(
        DataError,
        match=r"Could not load nyu-mll/glue \(rte, split train\).*127\.0\.0\.1 cannot be reached.*GLUE_DIR",
    ):
        read_split_from_hub(get_task("rte"), "train")
    assert time.monotonic() - start < 5


def test_behind_a_proxy_the_probe_leaves_the_answer_to_the_library(online, monkeypatch):
    from glue_lora.utils.hub import hub_reachable

    assert not hub_reachable(timeout=1)  # the closed local port
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hub_reachable(timeout=1)


def test_reachable_or_offline_hub_is_left_to_datasets(online, monkeypatch):
    import datasets

    from glue_lora.utils import hub

    calls = []

    def fake_load(path, name, split):
        calls.append((path, name, split))
        return datasets.Dataset.from_dict({"sentence": ["a"], "label": [1], "idx": [0]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=0: True)  # a flaky but present network
    assert read_split_from_hub(get_task("sst2"), "train")["label"] == [1]
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=0: pytest.fail("probed while offline"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # honoured: the cache is datasets' business
    read_split_from_hub(get_task("sst2"), "train")
    assert len(calls) == 2


def test_a_run_without_network_fails_before_building_the_model(online, monkeypatch, tmp_path):
    from glue_lora import train as train_module

    monkeypatch.setattr(train_module, "build_model", lambda *a, **k: pytest.fail("the model was built"))
    cfg = compose_train(["model=tiny_roberta", "task=rte", "paths.glue_dir=null"], tmp_path / "run")
    start = time.monotonic()
    with pytest.raises(DataError, match=r"Could not load nyu-mll/glue .*cannot be reached"):
        train_module.run(cfg)
    assert time.monotonic() - start < 5


def test_no_network_no_glue_dir_cli_message(tmp_path):
    from glue_lora.utils.hub import PROXY_VARIABLES

    env = {
        "HF_HUB_OFFLINE": "",
        "HF_DATASETS_OFFLINE": "",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "GLUE_DIR": "",
    }
    env.update(dict.fromkeys(PROXY_VARIABLES, ""))
    done = run_cli(
        "train.py",
        ["model=tiny_roberta", "task=rte", "paths.glue_dir=null", f"hydra.run.dir={tmp_path / 'run'}"],
        env=env,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: Could not load nyu-mll/glue" in done.stderr and "cannot be reached" in done.stderr
    assert "Traceback" not in done.stderr and "Retrying" not in done.stderr


def test_model_that_cannot_be_loaded_names_the_model_and_the_fixes():
    from glue_lora.model.backbone import build_config

    model_cfg = dict(
        compose_train(["model=roberta_base"]).model, name_or_path="glue-lora-tests/no-such-model"
    )
    with pytest.raises(
        ConfigError,
        match=r"Could not load the config of model=roberta_base from glue-lora-tests/no-such-model .*"
        r"model\.name_or_path=<local dir>.*HF_HUB_OFFLINE=1.*model\.pretrained=false",
    ):
        build_config(model_cfg, 2, False)


def test_model_weights_without_network_cli(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    done = run_cli(
        "train.py", ["model=roberta_base", "task=sst2", f"hydra.run.dir={tmp_path / 'run'}"], env=env
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: Could not load the config of model=roberta_base from roberta-base" in done.stderr
    assert "model.name_or_path=<local dir>" in done.stderr and "model.pretrained=false" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def sst2_rows(glue_fixtures):
    from glue_lora.data.reading import read_split

    return read_split(get_task("sst2"), glue_fixtures, "train")


def _ids(split):
    return [split[i]["input_ids"].tolist() for i in range(len(split))]


def test_a_damaged_token_cache_is_rebuilt_with_one_line(sst2_rows, tmp_path, caplog):
    from glue_lora.data.tokenized import tokenize_rows
    from tests.helpers.tokenizers import minilm_tokenizer

    tokenizer = minilm_tokenizer()
    first = tokenize_rows(sst2_rows, tokenizer, 64, tmp_path)
    (cache,) = tmp_path.glob("tokens-*")
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])  # a job killed while writing it
    with caplog.at_level(logging.WARNING, logger="glue_lora.data.tokenized"):
        again = tokenize_rows(sst2_rows, tokenizer, 64, tmp_path)
    assert _ids(again) == _ids(first)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "is damaged" in line and "rebuilding it" in line and "\n" not in line
    caplog.clear()
    assert _ids(tokenize_rows(sst2_rows, tokenizer, 64, tmp_path)) == _ids(first)  # rebuilt whole
    assert not caplog.records


def test_a_failed_token_cache_write_leaves_no_partial_file(sst2_rows, tmp_path, monkeypatch, caplog):
    from glue_lora.data import tokenized
    from tests.helpers.tokenizers import minilm_tokenizer

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tokenized.os, "replace", full_disk)
    split = tokenized.tokenize_rows(sst2_rows, minilm_tokenizer(), 64, tmp_path)
    assert len(split) == len(sst2_rows["texts"])  # the run goes on without the cache
    assert list(tmp_path.iterdir()) == [] and "No space left" in caplog.text


def test_jobs_tokenizing_the_same_rows_at_once_leave_one_whole_cache(sst2_rows, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from glue_lora.data.tokenized import tokenize_rows
    from tests.helpers.tokenizers import minilm_tokenizer

    tokenizer = minilm_tokenizer()
    with ThreadPoolExecutor(4) as pool:
        splits = list(pool.map(lambda _: tokenize_rows(sst2_rows, tokenizer, 64, tmp_path), range(4)))
    assert [p.name.startswith("tokens-") for p in tmp_path.iterdir()] == [True]  # no temporary left
    assert all(_ids(s) == _ids(splits[0]) for s in splits)
    assert _ids(tokenize_rows(sst2_rows, tokenizer, 64, tmp_path)) == _ids(splits[0])
