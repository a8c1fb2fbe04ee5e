"""Each model trained as its authors' code trains it (issue 27), checked against the values in that code,
so that a departure cannot come back silently; and the committed rows of the models whose recipe did not
change keep their run ids."""
import glob
import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from gapbench import cells
from gapbench.cells.base import ParamGroup
from gapbench.train import optim
from gapbench.config.identity import job_run_id
from gapbench.train.job import make_model, make_task
from gapbench.train.lightning_module import GapModule

ROOT = Path(__file__).resolve().parents[1]

# Lezcano/expRNN (commit 830ec83): (--lr, --lr_orth) defaults of 1_copying.py, 2_mnist.py, 3_timit.py
EXPRNN_RATES = {"1_copying.py": (2e-4, 2e-5), "2_mnist.py": (7e-4, 7e-5), "3_timit.py": (1e-3, 1e-4)}


def make_cfg(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=["logger=none", "threads=1", *overrides])


def optimizer_of(*overrides):
    cfg = make_cfg(*overrides)
    task = make_task(cfg)
    model = make_model(cfg, task)
    module = GapModule(task, model, lr=cfg.optim.lr,
                       optim={**OmegaConf.to_container(cfg.optim, resolve=True), "recipe": cfg.cell.get("recipe", "paper")})
    return model, module.configure_optimizers()


@pytest.mark.parametrize("script", EXPRNN_RATES)
def test_exprnn_trains_its_orthogonal_parameter_at_the_reference_codes_ratio(script):
    lr, lr_orth = EXPRNN_RATES[script]
    model, opt = optimizer_of("cell=exprnn", "cell.hidden_size=8", "cell.layers=2", f"optim.lr={lr}", "gap=4")
    skews = [p for n, p in model.named_parameters() if n.endswith("parametrizations.weight.original")]
    assert len(skews) == 2, "one skew parameter A per stacked layer"
    by_rate = {}
    for group in opt.param_groups:
        by_rate.setdefault(group["lr"], []).extend(group["params"])
    assert sorted(by_rate) == pytest.approx([lr_orth, lr], rel=1e-12)
    orth = by_rate[min(by_rate)]
    assert {id(p) for p in orth} == {id(p) for p in skews}
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(p.numel() for p in model.parameters()), \
        "every parameter once: the task's embedding and read-out at the main rate"


def test_recipe_none_and_models_without_groups_train_every_parameter_at_one_rate():
    _, opt = optimizer_of("cell=exprnn", "cell.hidden_size=8", "cell.recipe=none", "optim.lr=1e-3", "gap=4")
    assert [g["lr"] for g in opt.param_groups] == [1e-3]
    _, opt = optimizer_of("cell=lstm", "cell.hidden_size=8", "optim.lr=1e-3", "gap=4")
    assert [g["lr"] for g in opt.param_groups] == [1e-3]


def test_the_schedule_keeps_the_ratio():
    model = cells.build("exprnn", 3, 4)
    opt, sched = optim.build(optim.param_groups(model), {"name": "sgd", "lr": 1.0, "decay_after_epochs": 0,
                                                         "decay_factor": 0.5}, steps_per_epoch=1)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.05]


def test_declared_groups_name_real_parameters():
    for name in cells.names():
        cls = cells.cell_class(name)
        for group in cls.optim_groups:
            assert isinstance(group, ParamGroup) and group.source
            model = cells.build(name, 3, 4, max_len=8)
            assert set(group.params) <= dict(model.named_parameters()).keys()


# IndRNN: Sunnydreamrain/IndRNN_Theano_Lasagne adding/adding.py (commit d089267): MAG=2, seq_len=T,
# U_bound = pow(MAG, 1/T), U_lowbound = pow(1/MAG, 1/T); rnn0 ~ Uniform(0, U_bound), the last ~ Uniform(U_lowbound, U_bound)
@pytest.mark.parametrize("T", [20, 500])
def test_indrnn_initial_recurrent_weights_lie_in_the_authors_ranges_per_layer(T):
    MAG, H = 2, 4096
    U_bound, U_lowbound = pow(MAG, 1.0 / T), pow(1.0 / MAG, 1.0 / T)
    torch.manual_seed(0)
    stack = cells.build("indrnn", 2, H, layers=3, max_len=T)
    expected = [(0.0, U_bound), (0.0, U_bound), (U_lowbound, U_bound)]  # "only the last one" (IndRNN_pytorch)
    for layer, (lo, hi) in zip(stack.layers, expected):
        u = layer.weight_hh.detach()
        lo32, hi32 = torch.tensor(lo, dtype=u.dtype), torch.tensor(hi, dtype=u.dtype)
        assert lo32 <= u.min() and u.max() <= hi32
        assert u.min() - lo32 < 0.01 * (hi32 - lo32) and hi32 - u.max() < 0.01 * (hi32 - lo32), "the whole range"
    single = cells.build("indrnn", 2, H, max_len=T).weight_hh
    assert single.min() >= torch.tensor(U_lowbound) and single.max() <= torch.tensor(U_bound), "one layer is the last"
    old = cells.build("indrnn", 2, H, max_len=T, recurrent_init="uniform01").weight_hh
    assert old.min() >= 0 and old.max() <= min(1.0, U_bound) and old.max() > 0.99 * min(1.0, U_bound)


def test_indrnn_adding_experiment_is_the_authors_setting():
    cfg = make_cfg("experiment=indrnn_adding")
    assert (cfg.cell.name, cfg.cell.layers, cfg.cell.hidden_size, cfg.cell.max_gain) == ("indrnn", 2, 128, 2.0)
    assert (cfg.task.name, cfg.gap, cfg.task.batch_size, cfg.optim.lr, cfg.optim.name) == ("adding", 500, 32, 2e-4, "adam")


def committed_rows():
    """One committed reference row per sweep and model: ((sweep, model), run file)."""
    out = {}
    for f in sorted(glob.glob(str(ROOT / "reference" / "horizons" / "runs" / "*.json"))):
        row = json.loads(Path(f).read_text())
        out.setdefault((row["sweep_id"], row["cell"]), f)
    return sorted(out.items())


# the overrides that spell out a model's recipe before issue 27, for rows stored before it
OLD_RECIPE = {"exprnn": ("cell.recipe", ["cell.recipe=none"]),
              "indrnn": ("cell.recurrent_init", ["cell.recurrent_init=uniform01", "cell.layers=1"])}


@pytest.mark.parametrize("key, path", committed_rows(), ids=lambda v: "-".join(v) if isinstance(v, tuple) else "")
def test_committed_reference_rows_keep_their_run_ids(key, path):
    """Every committed row has the run id its config gives today; a row of expRNN or IndRNN stored
    before their recipes changed has the id of the old recipe spelled out, and the default's id differs."""
    model = key[1]
    row = json.loads(Path(path).read_text())
    recipe_key, old_recipe = OLD_RECIPE.get(model, (None, []))
    old = old_recipe if recipe_key and f"cfg.{recipe_key}" not in row else []
    args = (f"experiment={row['sweep_id']}", "results_dir=reference/horizons", f"cell={model}", f"gap={row['gap']}",
            f"seed={row['seed']}", f"optim.lr={row['cfg.optim.lr']}")
    assert job_run_id(make_cfg(*args, *old)) == row["run_id"]
    if old:
        assert job_run_id(make_cfg(*args)) != row["run_id"], "the new recipe is a new condition"
