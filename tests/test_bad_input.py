"""Bad input is caught before training, with a message that names the problem and the fix."""

from __future__ import annotations

import shutil

import pytest
import torch

from glue_lora.train import run
from glue_lora.training.module import GlueLoRAModule
from glue_lora.utils.errors import ConfigError, DataError, TrainingError
from tests.helpers.glue_files import write_glue_task
from tests.helpers.runs import TINY, compose_train, run_cli


def train(overrides, tmp_path, glue_dir, token_cache):
    cfg = compose_train(
        [*TINY, "task=rte", f"paths.glue_dir={glue_dir}", f"data.cache_dir={token_cache}", *overrides],
        tmp_path,
    )
    return run(cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # types
        (["data.batch_size=abc"], r"data\.batch_size='abc' is invalid: it must be an integer"),
        (["data.batch_size=8.5"], r"data\.batch_size=8\.5 is invalid: it must be an integer"),
        (
            ["model.trust_remote_code=yes"],
            r"model\.trust_remote_code='yes' is invalid: it must be true or false",
        ),
        (["lora.alpha=sixteen"], r"lora\.alpha='sixteen' is invalid: it must be .*a number"),
        (["lora.layers=[a]"], r"lora\.layers=\['a'\] is invalid: it must be a list of an integer or null"),
        (["seed=true"], r"seed=True is invalid: it must be an integer"),
        # ranges
        (["data.batch_size=0"], r"data\.batch_size=0 is invalid: it must be a positive integer"),
        (["lora.r=0"], r"lora\.r=0 is invalid: the LoRA rank must be a positive integer.*lora=none"),
        (["lora.dropout=1.5"], r"lora\.dropout=1\.5 is invalid: it must be in \[0, 1\)"),
        (["optimizer.lr=-1"], r"optimizer\.lr=-1 is invalid: the learning rate must be positive"),
        (["optimizer.betas=[0.9,1.5]"], r"optimizer\.betas=1\.5 is invalid"),
        (["schedule.warmup_ratio=1.5"], r"schedule\.warmup_ratio=1\.5 is invalid"),
        (["schedule.name=step"], r"schedule\.name='step' is unknown: use linear, cosine or constant"),
        (["trainer.max_epochs=-1", "trainer.max_steps=-1"], r"would train forever"),
        (["trainer.val_check_interval=1.5"], r"val_check_interval=1\.5 is invalid"),
        (["trainer.precision=17"], r"trainer\.precision=17 is unknown"),
        (["trainer.precision=16-true"], r"16-true casts the whole model.*trainer\.precision=16-mixed"),
        (["trainer.precision=bf16-true"], r"precision=bf16-mixed .*model\.frozen_dtype=bfloat16"),
        (["checkpoint.every_n_train_steps=-5"], r"checkpoint\.every_n_train_steps=-5 is invalid"),
        (["data.sampler=sorted"], r"data\.sampler='sorted' is unknown: use length_grouped .* or random"),
        (["data.padding=none"], r"data\.padding='none' is unknown: use longest .* or max_length"),
        (["model.lora_a_init=zeros"], r"model\.lora_a_init='zeros' is unknown: use kaiming_uniform"),
        (
            ["data.global_batch_size=12"],
            r"data\.global_batch_size=12 is not a multiple of the per-step batch 8",
        ),
        (
            ["data.global_batch_size=0"],
            r"data\.global_batch_size=0 is invalid: it must be a positive integer",
        ),
        # unknown keys: a `+` override or an experiment file can add any key
        (["+data.batchsize=16"], r"data\.batchsize is not a setting of data .*batch_size.*spelling"),
        (["+lora.rank=4"], r"lora\.rank is not a setting of lora"),
        (
            ["+trainer.max_epoch=3"],
            r"trainer\.max_epoch is not an argument of lightning\.Trainer.*max_epochs",
        ),
        (["+optimizer.lrr=0.1"], r"optimizer\.lrr is not an argument of torch\.optim\.AdamW"),
        (["+callbacks.lr_monitor.interval=step"], r"callbacks\.lr_monitor\.interval is not an argument"),
        (["trainer._target_=lightning.Trainr"], r"trainer\._target_='lightning\.Trainr' cannot be imported"),
        (["task.name=foo"], r"Unknown task 'foo'\. Known tasks: .*rte"),
        # values only Lightning checks, refused as it builds the Trainer
        (["trainer.strategy=foo"], r"lightning\.Trainer refused the trainer settings .*strategy='foo'"),
        (["trainer.gradient_clip_algorithm=foo"], r"lightning\.Trainer refused .*gradient_clip_algorithm"),
        (["trainer.max_time=abc"], r"lightning\.Trainer refused the trainer settings"),
        # the model: checked once it is built, before any data is read
        (
            ["lora.targets=[nope]"],
            r"lora\.targets \['nope'\] not found.*\['dense', .*'query'.*set lora\.targets",
        ),
        (["lora.layers=[0,5]"], r"lora\.layers \[5\] out of range: .* has layers 0\.\.1"),
        (
            ["model.architecture.vocab_size=1000"],
            r"tokenizer has 30522 tokens but the model's embedding table has 1000",
        ),
    ],
)
def test_invalid_config_is_refused_before_training(overrides, message, glue_fixtures, token_cache, tmp_path):
    with pytest.raises(ConfigError, match=message):
        train(overrides, tmp_path, glue_fixtures, token_cache)
    assert not (tmp_path / "checkpoints").exists()


def test_cli_prints_one_paragraph_and_exits_2(tmp_path):
    done = run_cli(
        "train.py", ["model=tiny_roberta", "data.batch_size=0", f"hydra.run.dir={tmp_path / 'run'}"]
    )
    assert done.returncode == 2
    assert (
        "error: data.batch_size=0 is invalid: it must be a positive integer (e.g. data.batch_size=32)."
        in done.stderr
    )
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("group", ["task", "model", "lora"])
def test_unknown_group_option_lists_the_options_in_one_paragraph_and_exits_2(group):
    done = run_cli("train.py", [f"{group}=nope"])
    assert done.returncode == 2, done.stderr
    assert f"error: {group}=nope is unknown: there is no conf/{group}/nope.yaml. Use one of " in done.stderr
    expected = {"task": "rte", "model": "tiny_roberta", "lora": "r8"}[group]
    assert expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochz=3", "Could not override 'trainer.max_epochz'."),
        ("task=[", "The override: 'task=['."),
    ],
)
def test_an_override_hydra_cannot_compose_is_one_paragraph_and_exit_2(override, message):
    done = run_cli("eval.py", [override])
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_hydra_full_error_still_shows_hydras_traceback():
    done = run_cli("train.py", ["task=nope"], env={"HYDRA_FULL_ERROR": "1"})
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "MissingConfigException" in done.stderr


@pytest.fixture
def rte_dir(tmp_path):
    """A GLUE directory with only RTE, whose files a test can damage."""
    root = tmp_path / "glue"
    write_glue_task(root, "RTE")
    return root


def test_missing_data_file(rte_dir, token_cache, tmp_path):
    (rte_dir / "RTE" / "dev.tsv").unlink()
    with pytest.raises(DataError, match=r"Missing data file .*RTE/dev\.tsv for task rte\. Point GLUE_DIR"):
        train([], tmp_path / "run", rte_dir, token_cache)


def test_missing_task_directory(rte_dir, token_cache, tmp_path):
    shutil.rmtree(rte_dir / "RTE")
    with pytest.raises(DataError, match=r"The data directory .*RTE for task rte does not exist"):
        train([], tmp_path / "run", rte_dir, token_cache)


def test_empty_data_file(rte_dir, token_cache, tmp_path):
    (rte_dir / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n")
    with pytest.raises(DataError, match=r"train\.tsv holds no rows\. Replace it"):
        train([], tmp_path / "run", rte_dir, token_cache)


def test_row_with_wrong_column_count_names_file_and_line(rte_dir, token_cache, tmp_path):
    path = rte_dir / "RTE" / "train.tsv"
    lines = path.read_text().splitlines()
    lines[4] = "7\tonly one sentence\tentailment"  # line 5 of the file
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DataError,
        match=r"train\.tsv, line 5: expected 4 tab-separated fields .* found 3.*skip_malformed_rows",
    ):
        train([], tmp_path / "run", rte_dir, token_cache)


def test_label_outside_the_task_set(rte_dir, token_cache, tmp_path):
    path = rte_dir / "RTE" / "dev.tsv"
    lines = path.read_text().splitlines()
    fields = lines[3].split("\t")
    lines[3] = "\t".join([*fields[:-1], "maybe"])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DataError,
        match=r"dev\.tsv, line 4: label 'maybe' is not one of the rte labels \['entailment', 'not_entail",
    ):
        train([], tmp_path / "run", rte_dir, token_cache)


def test_non_finite_loss_stops_with_step_and_lr_and_keeps_last_good_checkpoint(
    glue_fixtures, token_cache, tmp_path, monkeypatch
):
    real_step = GlueLoRAModule.training_step

    def diverging(self, batch, batch_idx):
        loss = real_step(self, batch, batch_idx)
        return loss * float("nan") if self.global_step == 3 else loss

    monkeypatch.setattr(GlueLoRAModule, "training_step", diverging)
    with pytest.raises(
        TrainingError,
        match=r"loss is nan at step 3 \(epoch 0, batch 3\), learning rate [0-9.e-]+\. .*optimizer\.lr",
    ):
        train(["checkpoint.every_n_train_steps=1"], tmp_path, glue_fixtures, token_cache)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize("where", ["data.cache_dir", "GLUE_LORA_CACHE"])
def test_a_token_cache_path_that_is_a_file_is_named(where, glue_fixtures, tmp_path):
    a_file = tmp_path / "cache"
    a_file.write_text("not a directory")
    args = [*TINY, "task=rte", f"paths.glue_dir={glue_fixtures}", f"hydra.run.dir={tmp_path / 'run'}"]
    if where == "data.cache_dir":
        done = run_cli("train.py", [*args, f"data.cache_dir={a_file}"])
    else:
        done = run_cli("train.py", args, env={"GLUE_LORA_CACHE": str(a_file)})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{a_file} is a file" in done.stderr and "GLUE_LORA_CACHE" in done.stderr
