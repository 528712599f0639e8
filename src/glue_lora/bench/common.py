"""What every benchmark setting shares: the job description, the config, and one way to time steps.

Each setting (ours, the peer in two settings, inference) runs in its own process so that peak
memory figures do not mix; the process receives a :class:`Job` and writes a flat dict of figures.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from glue_lora.utils import memory
from glue_lora.utils.memory import measured_optimizer_state_bytes

# The training settings, in the order of the table; "inference" measures merged vs unmerged LoRA.
TRAIN_SETTINGS = ("ours", "peer_default", "peer_best")


@dataclass
class Job:
    """One measurement: which setting, on which config, for how many steps."""

    setting: str
    overrides: list[str]
    config_dir: str
    run_dir: str
    steps: int = 100
    warmup: int = 10
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # Time to accuracy: evaluate every `eval_every` steps on the full dev split, stop at `target`.
    target: float | None = None
    eval_every: int = 100
    # Throughput runs evaluate once, after the timed steps, on this many dev rows.
    eval_rows: int | None = 256
    inference_rounds: int = 5

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> Job:
        return cls(**json.loads(Path(path).read_text()))

    @property
    def time_to_accuracy(self) -> bool:
        return self.target is not None


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def compose_config(job: Job, device: str) -> DictConfig:
    """The config ``python train.py <overrides>`` would run, with the benchmark's fixed values.

    The bench's own values (batch size, steps, seed, evaluation) come after the user's overrides, so
    they win; on a GPU ``trainer=gpu`` (bf16-mixed) is chosen unless the overrides name a trainer.
    """
    from hydra import compose, initialize_config_dir

    overrides = list(job.overrides)
    if not any(o.split("=", 1)[0].lstrip("+~") == "trainer" for o in overrides):
        overrides.append("trainer=gpu" if device == "cuda" else "trainer=cpu")
    overrides += [
        f"data.batch_size={job.batch_size}",
        f"seed={job.seed}",
        f"trainer.max_steps={job.steps}",
        "trainer.max_epochs=-1",  # exactly max_steps, as the peer's max_steps
        "trainer.enable_model_summary=false",
    ]
    if job.time_to_accuracy:
        overrides += [f"trainer.val_check_interval={job.eval_every}", "data.max_eval_rows=null"]
    elif job.eval_rows is not None:
        overrides.append(f"data.max_eval_rows={job.eval_rows}")
    with initialize_config_dir(config_dir=str(Path(job.config_dir).resolve()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(job.run_dir)
    return cfg


def optimizer_state_mb(optimizer: Any) -> float:
    return measured_optimizer_state_bytes(optimizer) / 2**20


class StepClock:
    """Wall time of optimizer steps ``warmup+1 .. N``, and the tokens of the batches they consumed.

    Both trainers call :meth:`batch` for each batch in the order they train on them and
    :meth:`step_end` after each optimizer step; time spent evaluating in between is excluded.
    On CUDA the clock synchronises only at the two ends of the timed window.
    """

    def __init__(self, warmup: int, cuda: bool) -> None:
        self.warmup = warmup
        self.cuda = cuda
        self.start: float | None = None
        self.end: float | None = None
        # CPU seconds of this process over the window: robust to other load on a shared machine.
        self.cpu_start = 0.0
        self.cpu_end = 0.0
        self.steps = 0
        self.paused = 0.0  # evaluation time since training started
        self._paused_before_window = 0.0
        self.cpu_paused = 0.0
        self._cpu_paused_before_window = 0.0
        self._cpu_pause_start = 0.0
        self._pause_start: float | None = None
        self.batches: list[tuple[int, Any, int]] = []  # (rows, real tokens, computed tokens)
        self.train_start = time.perf_counter()
        self.cpu_train_start = time.process_time()

    @property
    def running(self) -> bool:
        """Training, not paused for evaluation and not finished."""
        return self._pause_start is None and self.end is None

    def _now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def begin(self) -> None:
        self.train_start = self._now()
        self.cpu_train_start = time.process_time()
        if self.warmup == 0:
            self.start = self.train_start
            self.cpu_start = time.process_time()

    def batch(self, attention_mask: Any) -> None:
        # The sum stays a tensor (on the GPU, no sync); it is read once at the end.
        self.batches.append((attention_mask.shape[0], attention_mask.sum(), attention_mask.numel()))

    def step_end(self, step: int) -> None:
        self.steps = step
        if step == self.warmup:
            self.start = self._now()
            self.cpu_start = time.process_time()
            self._paused_before_window = self.paused
            self._cpu_paused_before_window = self.cpu_paused

    def pause(self) -> None:
        self._pause_start = time.perf_counter()
        self._cpu_pause_start = time.process_time()

    def resume(self) -> None:
        if self._pause_start is not None and self.end is None:
            self.paused += time.perf_counter() - self._pause_start
            self.cpu_paused += time.process_time() - self._cpu_pause_start
        self._pause_start = None

    def eval_point(self, step: int, score: float) -> dict[str, float]:
        """Figures at an evaluation (called while paused for it): training seconds exclude evaluation."""
        now = time.perf_counter()
        paused_at = self._pause_start if self._pause_start is not None else now
        cpu_paused_at = self._cpu_pause_start if self._pause_start is not None else time.process_time()
        return {
            "step": step,
            "score": score,
            "train_seconds": paused_at - self.train_start - self.paused,
            "train_cpu_seconds": cpu_paused_at - self.cpu_train_start - self.cpu_paused,
            "wall_seconds": now - self.train_start,
        }

    def finish(self) -> None:
        self.end = self._now()
        self.cpu_end = time.process_time()

    def summary(self) -> dict[str, float]:
        if self.start is None or self.end is None or self.steps <= self.warmup:
            raise RuntimeError(
                f"the timed window is empty: {self.steps} steps ran, {self.warmup} were warm-up. "
                "Run more steps (--steps) or fewer warm-up steps (--warmup)."
            )
        timed = self.batches[self.warmup : self.steps]
        seconds = self.end - self.start - (self.paused - self._paused_before_window)
        cpu_seconds = self.cpu_end - self.cpu_start - (self.cpu_paused - self._cpu_paused_before_window)
        rows = sum(b[0] for b in timed)
        real = sum(int(b[1]) for b in timed)
        computed = sum(b[2] for b in timed)
        return {
            "timed_steps": self.steps - self.warmup,
            "seconds": seconds,
            "samples": rows,
            "real_tokens": real,
            "computed_tokens": computed,
            "samples_per_s": rows / seconds,
            "real_tokens_per_s": real / seconds,
            "computed_tokens_per_s": computed / seconds,
            "padding_share": 1 - real / computed if computed else 0.0,
            "cpu_seconds": cpu_seconds,
            "samples_per_cpu_s": rows / max(cpu_seconds, 1e-9),
        }


def peak_memory_mb(cuda: bool) -> float:
    return memory.peak_memory_mb("cuda" if cuda else None)


def reset_peak_memory(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
