"""stack=peer: the same cell trained by transformers Trainer + peft, written as ours writes it, and
the comparison table that sets glue-lora LoRA, full fine-tuning and the peer side by side."""

from __future__ import annotations

import pytest

from glue_lora.reports.comparison import comparison_markdown
from glue_lora.reports.runs import find_runs
from glue_lora.utils.errors import ConfigError
from tests.helpers.runs import compose_tiny_run


def test_peer_trains_the_same_cell_and_the_summary_sets_the_variants_side_by_side(
    glue_fixtures, token_cache, tmp_path
):
    from glue_lora.bench.peer_train import run as run_peer
    from glue_lora.train import run as run_ours

    def compose(name: str, variant: str):
        return compose_tiny_run(
            glue_fixtures, token_cache, tmp_path / name, ["task=mrpc", f"variant={variant}"]
        )

    ours = run_ours(compose("ours", "lora"))
    full = run_ours(compose("full", "full"))
    peer_cfg = compose("peer", "peer_lora")
    assert peer_cfg.stack == "peer" and full["lora"] is None
    peer = run_peer(peer_cfg)

    assert (ours["stack"], peer["stack"]) == ("ours", "peer")
    # Same rows, batch and epochs: evaluated at the same optimizer steps, same trainable parameters.
    assert [e["step"] for e in peer["history"]] == [e["step"] for e in ours["history"]] == [6, 12]
    assert peer["params"]["trainable"] == ours["params"]["trainable"]
    assert peer["train"]["optimizer_state_mb"] == pytest.approx(ours["train"]["optimizer_state_mb"])
    assert (tmp_path / "peer" / "adapter" / "adapter_config.json").is_file()
    assert full["sizes"]["adapter_mb"] > 20 * ours["sizes"]["adapter_mb"] > 0

    table = comparison_markdown(find_runs([tmp_path]))
    assert table is not None
    for row in ("| glue-lora r8-a16 |", "| glue-lora full |", "| Trainer + peft r8-a16 |"):
        assert table.count(row) == 3  # best, last and cost tables
    assert "glue-lora r8-a16 − glue-lora full | best" in table
    assert "glue-lora r8-a16 − Trainer + peft r8-a16 | last" in table
    assert "x smaller" in table


def test_peer_refuses_what_it_has_no_equivalent_for(glue_fixtures, token_cache, tmp_path):
    from glue_lora.bench.peer_train import run as run_peer

    cfg = compose_tiny_run(
        glue_fixtures, token_cache, tmp_path, ["variant=peer_lora", "regularizer.rdrop_alpha=1.0"]
    )
    with pytest.raises(ConfigError, match=r"stack=peer .* R-Drop"):
        run_peer(cfg)
    assert not (tmp_path / "results.json").exists()


def test_peer_refuses_methods_other_than_lora(glue_fixtures, token_cache, tmp_path):
    from glue_lora.bench.peer_train import run as run_peer

    cfg = compose_tiny_run(glue_fixtures, token_cache, tmp_path, ["variant=peer_lora", "method=dora"])
    with pytest.raises(ConfigError, match=r"stack=peer .* method=dora"):
        run_peer(cfg)
    assert not (tmp_path / "results.json").exists()
