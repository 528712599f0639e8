"""The one table of task facts: files, columns, labels, metrics and the primary metric.

Everything task-specific that the rest of the code needs is read from here; no other module
branches on a task's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from glue_lora.utils.errors import ConfigError

GLUE_HUB_PATH = "nyu-mll/glue"


@dataclass(frozen=True)
class TaskSpec:
    """Facts about one task.

    ``splits`` maps our split names to file names in the task's directory. ``dev`` is the split the
    primary metric is read from; ``dev_mm`` (MNLI only) is logged under ``val_mm/``.
    ``label_names`` are the labels as written in the files, in id order; ``None`` means regression.
    """

    name: str
    directory: str
    text_columns: tuple[str, ...]
    label_column: str
    label_names: tuple[str, ...] | None
    metrics: tuple[str, ...]
    primary_metric: str
    splits: dict[str, str] = field(
        default_factory=lambda: {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
    )
    # Column names for files without a header line (CoLA, AG News); None means the file has one.
    headerless_columns: tuple[str, ...] | None = None
    # Splits whose file has a header line although the task's other files have none (CoLA's test).
    header_splits: tuple[str, ...] = ()
    file_format: str = "tsv"
    hub_path: str = GLUE_HUB_PATH
    hub_name: str | None = None
    hub_splits: dict[str, str] = field(
        default_factory=lambda: {"train": "train", "dev": "validation", "test": "test"}
    )
    hub_text_columns: tuple[str, ...] | None = None
    # Name of the GLUE leaderboard prediction file for each predicted split.
    leaderboard_files: dict[str, str] = field(default_factory=dict)
    # Regression only: the range of valid scores; predictions are clipped to it for submission.
    score_range: tuple[float, float] | None = None

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    def has_header(self, split: str) -> bool:
        return self.headerless_columns is None or split in self.header_splits

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """Dev splits evaluated during training, the primary one first (a missing dev is carved)."""
        return ("dev", "dev_mm") if "dev_mm" in self.splits else ("dev",)


def _glue(name: str, directory: str, **kwargs) -> TaskSpec:
    kwargs.setdefault("hub_name", name)
    kwargs.setdefault("leaderboard_files", {"test": f"{directory}.tsv"})
    return TaskSpec(name=name, directory=directory, **kwargs)


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _glue(
            "mnli",
            "MNLI",
            text_columns=("sentence1", "sentence2"),
            label_column="gold_label",
            label_names=("entailment", "neutral", "contradiction"),
            metrics=("accuracy",),
            primary_metric="accuracy",
            splits={
                "train": "train.tsv",
                "dev": "dev_matched.tsv",
                "dev_mm": "dev_mismatched.tsv",
                "test": "test_matched.tsv",
                "test_mm": "test_mismatched.tsv",
            },
            hub_splits={
                "train": "train",
                "dev": "validation_matched",
                "dev_mm": "validation_mismatched",
                "test": "test_matched",
                "test_mm": "test_mismatched",
            },
            hub_text_columns=("premise", "hypothesis"),
            leaderboard_files={"test": "MNLI-m.tsv", "test_mm": "MNLI-mm.tsv"},
        ),
        _glue(
            "sst2",
            "SST-2",
            text_columns=("sentence",),
            label_column="label",
            label_names=("0", "1"),
            metrics=("accuracy",),
            primary_metric="accuracy",
        ),
        _glue(
            "mrpc",
            "MRPC",
            text_columns=("#1 String", "#2 String"),
            label_column="Quality",
            label_names=("0", "1"),
            metrics=("accuracy", "f1"),
            primary_metric="accuracy",
            hub_text_columns=("sentence1", "sentence2"),
        ),
        _glue(
            "cola",
            "CoLA",
            text_columns=("sentence",),
            label_column="label",
            label_names=("0", "1"),
            metrics=("mcc", "accuracy"),
            primary_metric="mcc",
            headerless_columns=("source", "label", "author_label", "sentence"),
            header_splits=("test",),
        ),
        _glue(
            "qnli",
            "QNLI",
            text_columns=("question", "sentence"),
            label_column="label",
            label_names=("entailment", "not_entailment"),
            metrics=("accuracy",),
            primary_metric="accuracy",
        ),
        _glue(
            "qqp",
            "QQP",
            text_columns=("question1", "question2"),
            label_column="is_duplicate",
            label_names=("0", "1"),
            metrics=("accuracy", "f1"),
            primary_metric="accuracy",
        ),
        _glue(
            "rte",
            "RTE",
            text_columns=("sentence1", "sentence2"),
            label_column="label",
            label_names=("entailment", "not_entailment"),
            metrics=("accuracy",),
            primary_metric="accuracy",
        ),
        _glue(
            "stsb",
            "STS-B",
            text_columns=("sentence1", "sentence2"),
            label_column="score",
            label_names=None,
            metrics=("pearson", "spearman"),
            primary_metric="pearson",
            score_range=(0.0, 5.0),
        ),
        _glue(
            "wnli",
            "WNLI",
            text_columns=("sentence1", "sentence2"),
            label_column="label",
            label_names=("0", "1"),
            metrics=("accuracy",),
            primary_metric="accuracy",
        ),
        TaskSpec(
            name="ag_news",
            directory="",
            text_columns=("title", "description"),
            label_column="class_index",
            label_names=("1", "2", "3", "4"),
            metrics=("accuracy",),
            primary_metric="accuracy",
            splits={"train": "train.csv", "test": "test.csv"},
            headerless_columns=("class_index", "title", "description"),
            file_format="csv",
            hub_path="fancyzhx/ag_news",
            hub_name=None,
            hub_splits={"train": "train", "test": "test"},
            hub_text_columns=("text",),
            leaderboard_files={"test": "ag_news.csv"},
        ),
    )
}


def get_task(name: str) -> TaskSpec:
    """Return the facts of task ``name`` or fail with the list of known tasks."""
    try:
        return TASKS[name]
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise ConfigError(
            f"Unknown task {name!r}. Known tasks: {known}. Pick one with task=<name>."
        ) from None
