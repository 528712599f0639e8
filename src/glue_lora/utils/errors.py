"""Every error of glue-lora: one base class, ``GlueLoraError``, for what a user can fix; each message
names the problem and the fix in one paragraph. No other module defines an exception class."""


class GlueLoraError(Exception):
    """Base class for errors a user can fix; the CLI prints these without a traceback."""


class ConfigError(GlueLoraError, ValueError):
    """A configuration value is invalid or inconsistent."""


class DataError(GlueLoraError, ValueError):
    """A data file is missing, empty or malformed."""


class CheckpointError(GlueLoraError):
    """A checkpoint is missing, damaged, unsafe to load, or belongs to another run."""


class TrainingError(GlueLoraError):
    """Training went wrong in a way the user must fix (e.g. the loss stopped being finite)."""


class DiskFullError(GlueLoraError, OSError):
    """A file could not be written because its file system is full (or over quota)."""


class RunDirError(GlueLoraError):
    """The run directory cannot be used as asked (refused by a Hydra callback before the run starts)."""


class PushError(GlueLoraError):
    """The Hub refused the upload or could not be reached."""


class JobRankError(GlueLoraError):
    """A process (rank) of a distributed sweep job failed; the job's other ranks were stopped."""


def config_error_paragraph(err: Exception) -> str:
    """Hydra's message about overrides it cannot compose, as one paragraph with the fix."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if isinstance(err, MissingConfigException) and err.missing_cfg_file and err.options:
        group, _, name = err.missing_cfg_file.rpartition("/")
        return (
            f"{group}={name} is unknown: there is no conf/{err.missing_cfg_file}.yaml. "
            f"Use one of {', '.join(err.options)} (the files of conf/{group}/)."
        )
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    cause = err.__cause__
    if cause is not None and str(cause).strip():
        lines.append(f"({str(cause).strip().splitlines()[0]})")
    if isinstance(err, OverrideParseException):
        lines.append(f"The override: {err.override!r}")
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        lines.append("Check the key's spelling against the config that --cfg job prints")
    return " ".join(line if line.endswith((".", ")")) else f"{line}." for line in lines)
