"""Every config file is exercised: each experiment composed and passed through the preflight, each
task and cell yaml read against its class's signature (the yaml lists the class's options at their defaults)."""
import inspect
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from gapbench import cells, tasks
from gapbench.cells.base import declared_options
from gapbench.config import CONF
from gapbench.config.preflight import check_command_line

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
TASK_YAMLS = sorted(p for p in (CONF / "task").glob("*.yaml") if p.stem != "custom")
CELL_YAMLS = sorted(p for p in (CONF / "cell").glob("*.yaml") if p.stem != "custom")


@pytest.mark.slow  # 1-20 s each: the preflight builds each job's model for its memory check
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_passes_the_preflight(name, tmp_path):
    for selection in (ROOT / "reference" / "horizons").glob("*_lr.json"):  # the reference's hydra.sweeper.lr_from
        shutil.copy(selection, tmp_path)
    assert check_command_line(["-m", f"experiment={name}", f"results_dir={tmp_path}"], CONF) is None
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("path", TASK_YAMLS, ids=[p.stem for p in TASK_YAMLS])
def test_task_yaml_lists_its_class_options_at_their_defaults(path):
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    cls = tasks.task_class(cfg["name"])
    params = inspect.signature(cls.__init__).parameters
    # a default of None that the class resolves itself (seq_mnist's permute: cls.default_permute)
    options = {k: getattr(cls, f"default_{k}", None) if p.default is None else
               list(p.default) if isinstance(p.default, tuple) else p.default
               for k, p in params.items() if k not in ("self", "gap", "seed", "batch_size")}
    given = tasks.options(cfg)
    assert set(given) <= set(options), f"{path.name}: {sorted(set(given) - set(options))} are no options of its class"
    differ = {k: (v, options[k]) for k, v in given.items() if v != options[k]}
    assert not differ, f"{path.name}: yaml value vs class default {differ}"


@pytest.mark.parametrize("path", CELL_YAMLS, ids=[p.stem for p in CELL_YAMLS])
def test_cell_yaml_lists_its_class_options_at_their_defaults(path):
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    declared = {k: o.default for k, o in declared_options(cells.cell_class(cfg["name"])).items()}
    given = cells.model_options(cells.options(cfg))
    assert set(given) <= set(declared), f"{path.name}: {sorted(set(given) - set(declared))} are no options of its class"
    assert {k: v for k, v in given.items() if v != declared[k]} == {}, path.name
