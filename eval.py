"""Evaluate a trained adapter: `python eval.py adapter=<run or adapter dir> [task=...] [split=dev|test]`."""

import hydra
from omegaconf import DictConfig

import glue_lora  # noqa: F401  (registers the config resolvers before Hydra resolves)


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    from glue_lora.evaluate import run
    from glue_lora.hydra_entry import run_and_report

    results = run_and_report(run, cfg)
    return results.get("score") if results else None


if __name__ == "__main__":
    from glue_lora.hydra_entry import exit_2_on_config_errors

    exit_2_on_config_errors(main)
