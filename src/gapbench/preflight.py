"""Check every job of a command line before Hydra starts any of them.

Hydra reports a bad group choice or key in several lines and only when the job that has it
starts; a sweep should instead refuse at once, with one line, before it writes anything.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gapbench.tasks import TaskError
from gapbench.validate import ConfigError, check_config

MAX_CHECKED = 2000  # larger sweeps: jobs beyond this are still checked when they start
GROUPS = ("cell", "task", "logger", "trainer", "experiment", "hydra/launcher")


def _choices(group: str) -> list[str]:
    """Options of a config group: our yaml files plus what plugins register (launchers)."""
    return GlobalHydra.instance().config_loader().get_group_options(group)


def _expand(overrides: list[str]) -> list[list[str]]:
    parsed = OverridesParser.create().parse_overrides(overrides)
    per_key = []
    for o in parsed:
        key = o.get_key_element()
        if o.is_sweep_override():
            if GlobalHydra.instance().is_initialized():  # glob(...) sweeps list the group's options
                o.config_loader = GlobalHydra.instance().config_loader()
            per_key.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            per_key.append([o.input_line])
    return [list(c) for c in itertools.islice(itertools.product(*per_key), MAX_CHECKED)]


def check_command_line(argv: list[str], conf_dir: Path) -> str | None:
    """None if every job of this command line is valid, else the one-line reason."""
    overrides = [a for a in argv if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        return f"cannot parse the command line: {str(e).splitlines()[0]}"
    ours = [o.input_line for o in parsed if not o.get_key_element().lstrip("+~").startswith("hydra")]
    with initialize_config_dir(config_dir=str(Path(conf_dir).absolute()), version_base="1.3"):
        for o in parsed:
            group = o.get_key_element().lstrip("+~")
            if group in GROUPS and not o.is_delete():
                valid = _choices(group)
                o.config_loader = GlobalHydra.instance().config_loader()
                values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
                for v in values:
                    if v not in valid and v != "null":
                        return f"unknown {group.replace('hydra/', '')} '{v}'; valid: {', '.join(valid)}"
        multirun = "-m" in argv or "--multirun" in argv
        if multirun:
            try:  # sweeps declared in config (experiment files' hydra.sweeper.params) count too
                params = compose(config_name="config", overrides=_expand(ours)[0],
                                 return_hydra_config=True).hydra.sweeper.get("params") or {}
            except (HydraException, OmegaConfBaseException):
                params = {}
            given = {o.get_key_element().lstrip("+~") for o in parsed}
            ours += [f"{k}={v}" for k, v in params.items() if k not in given]
        launcher = next((o.get_value_element_as_str() for o in parsed
                         if o.get_key_element().lstrip("+") == "hydra/launcher"), "basic")
        for job in _expand(ours):
            try:
                cfg = compose(config_name="config", overrides=job)
                check_config(cfg)
                if multirun and str(cfg.trainer.strategy).startswith("ddp") and "slurm" not in launcher:
                    return ("trainer.strategy=ddp inside a local multirun is not supported (Lightning's DDP "
                            "relaunches the script); run each multi-device job as its own command, "
                            "or sweep with hydra/launcher=slurm and hydra.launcher.tasks_per_node=N")
            except (ConfigError, TaskError) as e:
                return str(e)
            except (HydraException, OmegaConfBaseException) as e:
                return _hydra_error_line(e)
    return None


def _hydra_error_line(e: Exception) -> str:
    first = str(e).strip().splitlines()[0]
    if "Could not override" in first or "not in struct" in first:
        key = first.split("'")[1] if "'" in first else first
        return f"unknown config key '{key}'; see `python run.py --help` for the keys (add a new key with +{key}=...)"
    return first


def preflight(argv: list[str], conf_dir: Path) -> None:
    if any(a in ("-h", "--help", "--hydra-help", "--info", "-c", "--cfg", "--shell-completion") or a.startswith("--info")
           for a in argv):
        return
    problem = check_command_line(argv, conf_dir)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
