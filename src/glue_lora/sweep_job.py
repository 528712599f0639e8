"""A distributed job of a sweep: its ranks run as single runs of the job; this process starts them,
waits, and returns the job's results (the mechanics and the reasons: ``training.job_ranks``)."""

from __future__ import annotations

import json
import logging
import os
import shlex
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from glue_lora.utils.errors import JobRankError
from glue_lora.utils.run_files import RESULTS

log = logging.getLogger(__name__)

# The trainer keys that decide how many processes a job has.
PROCESS_KEYS = ("devices", "accelerator", "num_nodes", "strategy")


def ranks_to_start(cfg: DictConfig) -> int:
    """How many ranks this process must start for ``cfg``: a DDP job of a sweep that no launcher
    (torchrun, srun) started, else 0 (the job runs in this process, as a single run does)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if cfg.get("dry_run") or cfg.get("stack") == "peer" or "trainer" not in cfg:
        return 0
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return 0
    from glue_lora.training.batching import trainer_settings
    from glue_lora.training.job_ranks import processes_to_start

    # only these are resolved: the run's own checks come later, in the ranks
    settings = trainer_settings(cfg.trainer, PROCESS_KEYS)
    return processes_to_start({key: value for key, value in settings.items() if value is not None})


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the sweep job ``cfg`` as ``ranks_to_start(cfg)`` processes; returns its results.json."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd
    from lightning.fabric.plugins.environments.lightning import find_free_network_port

    from glue_lora.settings.run import ResumeSettings
    from glue_lora.train import check_run
    from glue_lora.training.job_ranks import (
        rank_command,
        rank_environment,
        rank_overrides,
        run_ranks,
        script_command,
    )
    from glue_lora.training.resume import finished_results, run_config

    check_run(cfg)  # a bad value fails the job here, as it would a job of one process
    hydra = HydraConfig.get()
    run_dir = Path(hydra.runtime.output_dir)
    out_dir = Path(cfg.paths.output_dir)
    resume = ResumeSettings(cfg.get("resume"), cfg.get("ckpt_path"))
    if (done := finished_results(run_config(cfg), resume, out_dir)) is not None:
        return done
    n = ranks_to_start(cfg)
    # As Hydra recorded them (.hydra/overrides.yaml): the sweep's values for this job, the sweeper's
    # (e.g. an Optuna trial's) included, so that every rank trains exactly this job.
    task = [str(o) for o in OmegaConf.to_container(hydra.overrides.task, resolve=False)]
    overrides = rank_overrides(task, [str(o) for o in OmegaConf.to_container(hydra.overrides.hydra)])
    port = int(os.environ.get("MASTER_PORT") or find_free_network_port())
    commands = [rank_command(script_command(), overrides, rank) for rank in range(n)]
    sweep_dir = str(hydra.sweep.dir)
    envs = [rank_environment(os.environ, rank, n, str(run_dir), port, sweep_dir) for rank in range(n)]
    log.info("Job %s: %d processes (ranks 0-%d), each: %s", hydra.job.num, n, n - 1, shlex.join(commands[0]))
    run_ranks(commands, envs, cwd=get_original_cwd())
    results = out_dir / RESULTS
    if not results.is_file():
        raise JobRankError(
            f"Every rank of the job in {run_dir} exited cleanly, but rank 0 wrote no {RESULTS}. "
            "Its output above says why; run the job alone (python train.py <its overrides>) to see it."
        )
    return json.loads(results.read_text())
