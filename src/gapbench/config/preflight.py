"""Check every job of a command line before Hydra starts any of them.

Hydra reports a bad group choice or key in several lines and only when the job that has it
starts; a sweep should instead refuse at once, with one line, before it writes anything.

A sweep is checked without expanding its whole product: Hydra composes one job per combination
of config-group choices (cell, task, ...); on each, every value of every other swept key is
checked one at a time, plus the job with the largest value of each numeric swept key (memory
grows with all of them). A 1,000-job sweep is checked in seconds, and no value goes unchecked.
"""
from __future__ import annotations

import copy
import itertools
import math
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from gapbench.paths import folder_problem
from gapbench.sweep.slurm import launcher_problem, requested_machine
from gapbench.tasks import TaskError
from gapbench.config.validate import ConfigError, check_config, check_eval_overrides, judging, plain

GROUPS = ("cell", "task", "logger", "trainer", "experiment", "debug", "hydra/launcher", "hydra/sweeper")
OPTIONAL_GROUPS = ("experiment", "debug")  # `optional ...: null` in conf/config.yaml's defaults
SAMPLING_SWEEPS_OK = ("basic", "horizon")  # sweepers that enumerate values: interval(...) means nothing to them
HYDRA_ADDABLE = ("hydra.launcher.", "hydra.sweeper.params.", "hydra.job.env_set.")  # +hydra.* keys gapbench passes on
MAX_CHECKED = 2000  # _expand: the first jobs of a sweep, for per-job measurements
MAX_GROUP_COMBINATIONS = 64  # beyond this, group choices too are varied one at a time
ADDABLE = ("cell", "task", "trainer")  # +KEY=... is refused unless a cell, task or Lightning's Trainer reads KEY


def _choices(group: str) -> list[str]:
    """Options of a config group: our yaml files plus what plugins register (launchers)."""
    return GlobalHydra.instance().config_loader().get_group_options(group)


VALUE_FLAGS = {"-cd": "dir", "--config-dir": "dir", "-cn": "name", "--config-name": "name",
               "-cp": "path", "--config-path": "path"}


def split_argv(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """(overrides, {'dir'|'name'|'path': value}) from a run.py command line, as Hydra reads it:
    `--config-dir DIR`, `--config-dir=DIR`, `-cd DIR` (and -cn/--config-name, -cp/--config-path)."""
    overrides, flags, it = [], {}, iter(argv)
    for a in it:
        flag, eq, value = a.partition("=")
        if flag in VALUE_FLAGS:
            flags[VALUE_FLAGS[flag]] = value if eq else next(it, "")
        elif not a.startswith("-"):
            overrides.append(a)
    return overrides, flags


def _expand(overrides: list[str]) -> list[list[str]]:
    """Every job of a sweep as its override list (the full product, at most MAX_CHECKED): for
    callers that need each job (gapbench.perf.overhead's per-job timings), not for checking."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    per_key = [[f"{o.get_key_element()}={v}" for v in _values(o)] if o.is_sweep_override() else [o.input_line]
               for o in parsed]
    return [list(c) for c in itertools.islice(itertools.product(*per_key), MAX_CHECKED)]


def _values(o) -> list[str]:
    if not o.is_sweep_override():
        return [o.get_value_element_as_str()]
    if o.is_interval_sweep():  # for a sampling sweeper (Optuna, ...): its two ends are checked
        return [str(o.value().start), str(o.value().end)]
    if GlobalHydra.instance().is_initialized():
        o.config_loader = GlobalHydra.instance().config_loader()  # glob(...) sweeps list the group's options
    return list(o.sweep_string_iterator())


def _one(key_element: str, value: str):
    return OverridesParser.create().parse_override(f"{key_element}={value}")


def _apply(cfg: dict, o) -> None:
    """Apply one parsed value override to a composed config (as plain containers) the way Hydra does;
    its key exists: the sweep's first value went through Hydra's own composition."""
    *parents, leaf = o.key_or_group.split(".")
    for p in parents:
        cfg = cfg.setdefault(p, {})
    if o.is_delete():
        cfg.pop(leaf, None)
    else:
        value = o.value()
        if isinstance(value, dict) and isinstance(cfg.get(leaf), dict):
            cfg[leaf] = OmegaConf.to_container(OmegaConf.merge(cfg[leaf], value))
        else:
            cfg[leaf] = value


def _interpolations(node) -> list[str]:
    if isinstance(node, dict):
        return [r for v in node.values() for r in _interpolations(v)]
    if isinstance(node, list):
        return [r for v in node for r in _interpolations(v)]
    return [node] if isinstance(node, str) and "${" in node else []


def _numeric(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values if v.lower() not in ("true", "false")] or None
    except ValueError:
        return None


def _unknown_addition(o) -> str | None:
    key = o.get_key_element()
    if not (key.startswith("+") or key.startswith("++")):
        return None
    name = key.lstrip("+")
    if name.startswith("hydra") or name in GROUPS or "/" in name:
        return None
    if name.split(".")[0] in ADDABLE and "." in name:
        return None  # checked against the cell's or task's options and Lightning's Trainer
    return (f"+{name} is not a key gapbench reads; new keys can be added only to cell, task (their options) "
            f"or trainer (Lightning Trainer arguments); see `python run.py --help`")


def _hydra_key_problem(o) -> str | None:
    """+hydra.* keys outside a launcher's or sweeper's parameters, and any `_target_` under hydra:
    code for Hydra to instantiate, which gapbench never asks the command line for."""
    key = o.get_key_element()
    name = key.lstrip("+~")
    if not name.startswith("hydra."):
        return None
    if name.split(".")[-1] == "_target_":
        return (f"{key}: gapbench does not take code for Hydra to run from the command line (a _target_); choose "
                f"a launcher or sweeper with hydra/launcher=... or hydra/sweeper=...")
    if key.startswith("+") and name.startswith("hydra.launcher.") and name.count(".") < 3:
        return (f"+{name} is not a parameter of the launcher; new keys go only inside its dict parameters "
                f"(e.g. +hydra.launcher.additional_parameters.KEY=...); see `python run.py --hydra-help`")
    if key.startswith("+") and not name.startswith(HYDRA_ADDABLE):
        return (f"+{name} is not a Hydra key gapbench uses; new hydra keys can be added only under "
                f"{', '.join(k + '*' for k in HYDRA_ADDABLE)}")
    return None


def _sweep_problem(o, multirun: bool, sweeper: str) -> str | None:
    """A sweep written without -m, one that sweeps no value, or an interval for an enumerating sweeper."""
    if not o.is_sweep_override():
        return None
    key = o.get_key_element().lstrip("+~")
    if not multirun:
        return (f"{o.input_line} is a sweep (one job per value); run it with -m: "
                f"python run.py -m {o.input_line} ...")
    if o.is_interval_sweep():
        if sweeper in SAMPLING_SWEEPS_OK:
            return (f"{o.input_line} is an interval, which only a sampling sweeper (e.g. Optuna) draws from; the "
                    f"{sweeper} sweeper needs values: {key}=range(START,STOP) or {key}=A,B,C")
        return None
    if not _values(o):
        valid = f"; valid: {', '.join(_choices(key))}" if key in GROUPS else ""
        return f"{o.input_line} sweeps no value (an empty sweep){valid}"
    return None


def _output_dir_problem(hydra_cfg, multirun: bool) -> str | None:
    """Hydra's own run or sweep folder (logs, .hydra/config.yaml), which it writes before any job."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        folder = str(hydra_cfg.sweep.dir if multirun else hydra_cfg.run.dir)
    except OmegaConfBaseException as e:
        return f"{key} cannot be resolved: {_hydra_error_line(e)}"
    problem = folder_problem(folder, f"{key}={folder}")
    return f"{problem}; give a writable directory (or leave {key} to follow results_dir)" if problem else None


def _null_group(group: str) -> str:
    valid = ", ".join(_choices(group))
    name = group.replace("hydra/", "")
    if group in OPTIONAL_GROUPS:
        return f"{group}=null is not a choice: leave {group} out for none (it is optional); valid: {valid}"
    return f"{group}=null is not a choice: every job needs a {name}; valid: {valid}"


def _sweep_of(hydra_cfg, parsed) -> str | None:
    """An experiment that sweeps (hydra.sweeper.params) run without -m: what to say."""
    params = hydra_cfg.sweeper.get("params") or {}
    if not params:
        return None
    experiment = next((o.get_value_element_as_str() for o in parsed
                       if o.get_key_element().lstrip("+") == "experiment"), "this experiment")
    swept = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    counts = [len(list(o.sweep_string_iterator())) if o.is_discrete_sweep() else None for o in swept
              if o.is_sweep_override()]
    jobs = f"{math.prod(counts)} jobs" if counts and None not in counts else "several jobs"
    return (f"experiment={experiment} is a sweep ({jobs} over {', '.join(params)}); run it with -m: "
            f"python run.py -m experiment={experiment} ...")


def _covering_jobs(ours: list[str]):
    """(overrides composed by Hydra, [(parsed value overrides to apply on top)]) pairs."""
    parsed = OverridesParser.create().parse_overrides(ours)
    groups = [o for o in parsed if o.get_key_element().lstrip("+~") in GROUPS]
    values = [o for o in parsed if o not in groups]
    group_sets = [[f"{o.get_key_element()}={v}" for v in _values(o)] for o in groups]
    if math.prod(len(g) for g in group_sets) <= MAX_GROUP_COMBINATIONS:
        combos = [list(c) for c in itertools.product(*group_sets)]
    else:
        first = [g[0] for g in group_sets]
        combos = [first] + [first[:i] + [v] + first[i + 1:] for i, g in enumerate(group_sets) for v in g[1:]]
    firsts = [f"{o.get_key_element()}={_values(o)[0]}" if o.is_sweep_override() else o.input_line for o in values]
    variations = [[_one(o.get_key_element(), v)] for o in values if o.is_sweep_override() for v in _values(o)[1:]]
    largest = []
    for o in values:
        nums = _numeric(_values(o)) if o.is_sweep_override() else None
        if nums and len(nums) > 1:
            largest.append(_one(o.get_key_element(), _values(o)[nums.index(max(nums))]))
    if len(largest) > 1:
        variations.append(largest)
    for combo in combos:
        yield combo + firsts, [[]] + variations


def _check_job(cfg, multirun: bool, launcher: str, slurm: dict | None = None) -> None:
    # a SLURM job is judged for what its launcher requests (GPUs, memory), not for this machine
    with judging(requested_machine(slurm, cfg.trainer) if slurm else None):
        check_config(cfg)
    if multirun and str(cfg.trainer.strategy).startswith("ddp") and "slurm" not in launcher:
        raise ConfigError("trainer.strategy=ddp inside a local multirun is not supported (Lightning's DDP "
                          "relaunches the script); run each multi-device job as its own command, "
                          "or sweep with hydra/launcher=slurm and hydra.launcher.tasks_per_node=N")


def _slurm(hydra_cfg) -> dict | None:
    """The SLURM launcher's resolved values, or None under another launcher."""
    if str(hydra_cfg.launcher.get("_target_", "")).endswith("gapbench_slurm_launcher.slurm_launcher.SlurmLauncher"):
        return OmegaConf.to_container(hydra_cfg.launcher, resolve=True)
    return None


def _check_launcher(hydra_cfg) -> None:
    slurm = _slurm(hydra_cfg)
    problem = slurm and launcher_problem(slurm)
    if problem:
        raise ConfigError(problem)
    n_jobs = hydra_cfg.launcher.get("n_jobs", None)
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0):
        raise ConfigError(f"hydra.launcher.n_jobs={n_jobs!r} is invalid; give the number of parallel jobs, "
                          "e.g. 2, or -1 for one per core")


def check_command_line(argv: list[str], conf_dir: Path) -> str | None:
    """None if every job of this command line is valid, else the one-line reason. `conf_dir`: the
    config directory of run.py (`--config-path` replaces it, `--config-dir` adds one)."""
    overrides, flags = split_argv(argv)
    config_name = flags.get("name") or "config"
    if flags.get("path"):
        conf_dir = Path(conf_dir).parent / flags["path"]  # Hydra: relative to the script's folder
    dirs = [Path(conf_dir)]
    if flags.get("dir"):
        if not Path(flags["dir"]).is_dir():
            return f"--config-dir {flags['dir']} is not a directory"
        dirs.insert(0, Path(flags["dir"]))
    if not any((d / f"{config_name}.yaml").is_file() for d in dirs):
        return f"no config {config_name}.yaml in {' or '.join(map(str, dirs))}; check --config-dir / --config-path / --config-name"
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        return f"cannot parse the command line: {str(e).splitlines()[0]}"
    ours = [o.input_line for o in parsed if not o.get_key_element().lstrip("+~").startswith("hydra")]
    arguments = list(ours)  # what Hydra hands the sweeper
    if any(o.get_key_element() == "eval_only" and o.value() is True for o in parsed):
        try:
            check_eval_overrides([o.get_key_element() for o in parsed])
        except ConfigError as e:
            return str(e)
    for o in parsed:
        problem = _unknown_addition(o) or _hydra_key_problem(o)
        if problem:
            return problem
    multirun = "-m" in argv or "--multirun" in argv
    sweeper = next((o.get_value_element_as_str() for o in parsed
                    if o.get_key_element().lstrip("+") == "hydra/sweeper"), "basic")
    with initialize_config_dir(config_dir=str(Path(conf_dir).absolute()), version_base="1.3"):
        if len(dirs) > 1:  # as Hydra's run does for --config-dir: searched before the primary config dir
            from hydra._internal.config_repository import ConfigRepository

            loader = GlobalHydra.instance().config_loader()
            loader.config_search_path.prepend(provider="command-line", path=f"file://{dirs[0].absolute()}")
            loader.repository = ConfigRepository(config_search_path=loader.config_search_path)
        for o in parsed:
            problem = _sweep_problem(o, multirun, sweeper)
            if problem:
                return problem
            group = o.get_key_element().lstrip("+~")
            if group in GROUPS and not o.is_delete():
                valid = _choices(group)
                for v in _values(o):
                    if v == "null":
                        return _null_group(group)
                    if v not in valid:
                        return f"unknown {group.replace('hydra/', '')} '{v}'; valid: {', '.join(valid)}"
        first = [f"{o.get_key_element()}={_values(o)[0]}" for o in parsed]
        try:
            with_hydra = compose(config_name=config_name, overrides=first, return_hydra_config=True)
            hydra_cfg = with_hydra.hydra
            _check_launcher(hydra_cfg)
        except ConfigError as e:
            return str(e)
        except (HydraException, OmegaConfBaseException) as e:
            return _hydra_error_line(e)
        if not multirun and _sweep_of(hydra_cfg, parsed):
            return _sweep_of(hydra_cfg, parsed)
        if multirun:  # sweeps declared in config (experiment files' hydra.sweeper.params) count too
            params = hydra_cfg.sweeper.get("params") or {}
            given = {o.get_key_element().lstrip("+~") for o in parsed}
            ours += [f"{k}={v}" for k, v in params.items() if k not in given]
        launcher = next((o.get_value_element_as_str() for o in parsed
                         if o.get_key_element().lstrip("+") == "hydra/launcher"), "basic")
        try:
            jobs = list(_covering_jobs(ours))
        except HydraException as e:
            return f"cannot expand the sweep: {str(e).splitlines()[0]}"
        for composed, variations in jobs:
            try:
                ours_first = [f for f, o in zip(first, parsed) if o.input_line in ours]
                if composed == ours_first:  # the job composed above for the launcher: no second composition
                    base = with_hydra.copy()
                    with open_dict(base):
                        del base["hydra"]
                else:
                    base = compose(config_name=config_name, overrides=composed)
                raw = OmegaConf.to_container(base, resolve=False)
                resolved = OmegaConf.to_container(base, resolve=True)
            except (HydraException, OmegaConfBaseException) as e:
                return _hydra_error_line(e)
            references = _interpolations(raw)
            for variation in variations:
                try:
                    cfg = resolved
                    if variation:
                        # a key that an interpolation reads (optim.lr: ${oc.select:task.lr,...}) is
                        # applied before resolving; any other key is applied to the resolved config
                        late = any(o.key_or_group in ref for o in variation for ref in references)
                        cfg = copy.deepcopy(raw if late else resolved)
                        for o in variation:
                            _apply(cfg, o)
                        if late:
                            cfg = OmegaConf.to_container(OmegaConf.create(cfg), resolve=True)
                    _check_job(plain(cfg), multirun, launcher, _slurm(hydra_cfg))
                except (ConfigError, TaskError) as e:
                    return str(e)
                except (HydraException, OmegaConfBaseException) as e:
                    return _hydra_error_line(e)
        problem = _output_dir_problem(hydra_cfg, multirun)  # after results_dir's own check: it names the cause
        if problem:
            return problem
        if multirun and str(hydra_cfg.sweeper.get("_target_", "")).endswith("HorizonSweeper"):
            return _horizon_problem(hydra_cfg, arguments, with_hydra)
    return None


def _horizon_problem(hydra_cfg, arguments: list[str], cfg) -> str | None:
    """hydra/sweeper=horizon's own refusals, before Hydra prints its sweep line or writes sweep.json."""
    from hydra_plugins.gapbench_horizon_sweeper.horizon_sweeper import HorizonSweeper, Refusal

    params = {k: v for k, v in OmegaConf.to_container(hydra_cfg.sweeper, resolve=True).items() if k != "_target_"}
    try:
        HorizonSweeper(**params).check(arguments, lambda combo: compose(config_name="config", overrides=combo),
                                       cfg.results_dir, cfg.get("sweep_id"), GlobalHydra.instance().config_loader())
    except Refusal as e:
        return str(e)
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
