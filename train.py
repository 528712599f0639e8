"""Train a LoRA adapter (or fully fine-tune) on a GLUE task: `python train.py model=... task=...`."""

import hydra
from omegaconf import DictConfig

import glue_lora  # noqa: F401  (registers the config resolvers before Hydra resolves)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from glue_lora.hydra_entry import run_and_report
    from glue_lora.sweep_job import ranks_to_start

    if cfg.get("stack") == "peer" and not cfg.get("dry_run"):
        from glue_lora.bench.peer_train import run  # the same cell by transformers Trainer + peft
    elif ranks_to_start(cfg):
        from glue_lora.sweep_job import run  # a DDP job of a sweep: its ranks are single runs of it
    else:
        from glue_lora.train import run

    results = run_and_report(run, cfg)
    return results.get("score") if results else None


if __name__ == "__main__":
    from glue_lora.hydra_entry import exit_2_on_config_errors

    exit_2_on_config_errors(main)
