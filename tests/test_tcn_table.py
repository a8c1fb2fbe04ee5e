"""experiment=tcn_table*: every recurrent row meets Table 1's parameter budget of Bai et al. 2018,
counted on the real modules, and every row composes and passes the config checks on a CPU."""
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from gapbench.train.job import make_model, make_task
from gapbench.config.validate import check_config

CONF = Path(__file__).resolve().parents[1] / "conf"
BUDGET = {"copy": 16e3, "adding": 70e3, "lm_word": 13e6, "lm_char": 3e6, "poly_music": 300e3}  # Table 1's model sizes
ROWS = [("tcn_table", "copy", 1000), ("tcn_table", "adding", 600), ("tcn_table_lm_word", "lm_word", 80),
        ("tcn_table_lm_char", "lm_char", 400), ("tcn_table_jsb", "poly_music", 200)]


def cfg_for(experiment, task, gap, cell, tmp_path, *extra):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[f"experiment={experiment}", f"task={task}", f"gap={gap}",
                                                        f"cell={cell}", f"results_dir={tmp_path}", "trainer.max_steps=2",
                                                        *extra])


@pytest.mark.parametrize("experiment,task,gap", ROWS)
def test_parameter_budgets_and_cpu_start(experiment, task, gap, tmp_path):
    torch.set_num_threads(1)
    for cell in ("rnn", "gru", "lstm"):  # the paper's baselines, the rows of the sweep
        cfg = cfg_for(experiment, task, gap, cell, tmp_path)
        assert cfg.trainer.accelerator == "auto"
        check_config(cfg)  # what a CPU-only `python run.py -m experiment=... trainer.max_steps=2` runs first
        with torch.device("meta"):  # count without allocating 13M parameters per cell
            model = make_model(cfg, make_task(cfg))
        n = sum(p.numel() for p in model.parameters())
        assert abs(n / BUDGET[task] - 1) < 0.02, (task, cell, n)


@pytest.mark.parametrize("task,gap,channels", [("copy", 1000, 10), ("adding", 600, 30)])
def test_the_tcn_row_uses_the_tcn_scripts_channels_and_starts_on_a_cpu(task, gap, channels, tmp_path):
    cfg = cfg_for("tcn_table", task, gap, "tcn", tmp_path)
    assert cfg.cell.hidden_size == channels
    check_config(cfg)


def test_the_jsb_tcn_row_is_table_2s_and_near_table_1s_size(tmp_path):
    """Table 2 (appendix): JSB Chorales TCN k=3, 2 levels, 150 channels, dropout 0.5, clip 0.4: 270K, Table 1's ≈300K."""
    cfg = cfg_for("tcn_table_jsb", "poly_music", 200, "tcn", tmp_path,
                  "cell.kernel_size=3", "cell.levels=2", "cell.conv_dropout=0.5")
    assert (cfg.cell.hidden_size, cfg.cell.layers, cfg.task.dropout, cfg.trainer.gradient_clip_val) == (150, 1, 0.0, 0.4)
    check_config(cfg)
    with torch.device("meta"):
        n = sum(p.numel() for p in make_model(cfg, make_task(cfg)).parameters())
    assert n == 269_938
