"""What `python run.py --help` lists, computed from the config tree so it never goes stale.

Registered as OmegaConf resolvers used by conf/hydra/help/gapbench.yaml. Imports only Hydra and
OmegaConf: help must not wait for torch, Lightning or W&B.
"""
from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from gapbench.config import CONF

EXTRA_GROUPS = {"hydra/launcher": "how a sweep's jobs run: one after another, in parallel processes, on SLURM",
                "hydra/sweeper": "which jobs a sweep runs: the whole grid (basic), or horizon (an adaptive search for each cell's memory horizon)"}
GROUP_MEANING = {
    "cell": "the recurrent cell",
    "task": "the benchmark task (gap's meaning depends on it)",
    "logger": "experiment logger; the results store gets its row either way",
    "trainer": "Lightning Trainer arguments",
    "experiment": "a committed sweep (python run.py -m experiment=NAME)",
    "debug": "quick checks; they never write a row to the results store",
}
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w]*):(?P<value>[^#]*?)(?:\s+#\s*(?P<doc>.*))?$")


def choices(group: str, conf: Path = CONF) -> list[str]:
    """A config group's options: our yaml files plus what Hydra plugins register (launchers).
    Read directly: Hydra's own group listing deep-copies its config repository per group (seconds)."""
    names = {p.stem for p in (conf / group).glob("*.yaml")}
    if group.startswith("hydra/"):
        from hydra.core.config_store import ConfigStore
        from hydra.core.plugins import Plugins

        Plugins.instance()  # registers the installed plugins' configs
        names |= {n.removesuffix(".yaml") for n in ConfigStore.instance().list(group)}
    return sorted(names)


def group_choices() -> str:
    """One line per config group: its choices, and what the group is for."""
    groups = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "__pycache__")) + list(EXTRA_GROUPS)
    lines = []
    for group in groups:
        choices_ = choices(group)
        meaning = GROUP_MEANING.get(group) or EXTRA_GROUPS.get(group, "")
        lines.append(f"  {group + '=':16} {', '.join(choices_)}" + (f"\n  {'':16} ({meaning})" if meaning else ""))
    return "\n".join(lines)


def documented_keys(config_file: Path = CONF / "config.yaml", prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, one-line meaning) for every key of a config file, from its comments;
    `prefix`: the group the file is read under (e.g. `trainer.`)."""
    out, parents = [], [prefix.rstrip(".")] if prefix else []
    base = len(parents)
    in_defaults = False
    for line in config_file.read_text().splitlines():
        m = _KEY.match(line)
        if not m or line.lstrip().startswith("#"):
            continue
        depth = len(m["indent"]) // 2 + base
        parents = parents[:depth] + [m["key"]]
        if depth == base:
            in_defaults = m["key"] in ("defaults", "hydra")
        if in_defaults:
            continue
        value = m["value"].strip()
        if value or m["doc"]:
            out.append((".".join(parents), value, (m["doc"] or "").strip()))
    return out


def _lines(keys: list[tuple[str, str, str]], width: int) -> list[str]:
    return [f"  {f'{k}={v}' if v else f'{k}.*':{width}}  {doc}".rstrip() for k, v, doc in keys]


def key_lines() -> str:
    """Every key of conf/config.yaml, then of the default trainer, cell and task (the groups' other
    choices: where to list their keys), then the horizon sweeper's."""
    main = documented_keys()
    groups = [("trainer", "default", "Lightning Trainer arguments; any other with +trainer.KEY=VALUE"),
              ("cell", "lstm", "another cell's options: python run.py cell=NAME --cfg job --package cell"),
              ("task", "copy", "another task's options: python run.py task=NAME --cfg job --package task")]
    group_keys = [(g, choice, note, [k for k in documented_keys(CONF / g / f"{choice}.yaml", f"{g}.") if k[0] != f"{g}.name"])
                  for g, choice, note in groups]
    sweeper = [("hydra.sweeper.factor", "1.5", "stop when the bracket [solved gap, failed gap) is within this ratio"),
               ("hydra.sweeper.max_gap", "2000", "the largest gap tried")]
    every = main + sweeper + [k for *_, keys in group_keys for k in keys]
    width = max(len(k) + len(v) + 1 for k, v, _ in every)
    text = _lines(main, width)
    for group, choice, note, keys in group_keys:
        text += ["", f"  {group}.* ({group}={choice}; {note}):", *_lines(keys, width)]
    text += ["", "  hydra.sweeper.* (hydra/sweeper=horizon; also grow, min_gap, lr_from: "
                 "python run.py hydra/sweeper=horizon --cfg hydra --package hydra.sweeper):", *_lines(sweeper, width)]
    return "\n".join(text).replace("$", "$$")  # Hydra fills the help template with string.Template


OmegaConf.register_new_resolver("gapbench_groups", group_choices, replace=True)
OmegaConf.register_new_resolver("gapbench_keys", key_lines, replace=True)


def render() -> str:
    """The `--help` text: conf/hydra/help/gapbench.yaml filled in as Hydra would fill it."""
    import string

    text = OmegaConf.load(CONF / "hydra" / "help" / "gapbench.yaml")
    with_hydra = OmegaConf.create({"hydra": {"help": text}})
    return string.Template(with_hydra.hydra.help.template).safe_substitute()
