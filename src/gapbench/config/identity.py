"""What identifies a job: the config hash and run id, and the keys left out of them.

Imports nothing of gapbench, torch or Lightning: the sweeper, the results store and the analyses
compute ids without starting a training stack. Changing what the hash sees changes every run id;
a key added later goes into NEUTRAL_DEFAULTS so that rows stored before it keep theirs.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Keys that change how a job is shown or stored, never what it computes (threads: only the rounding of
# CPU sums, like the device; docs/report.md, Conditions): left out of the config hash.
PRESENTATION_KEYS = {"results_dir", "sweep_id", "rerun", "threads", "progress", "checkpoint_every", "logger", "wandb",
                     "verbose", "eval_only", "ckpt_path", "eval_out"}
PRESENTATION_TRAINER_KEYS = {"log_every_n_steps", "enable_model_summary", "enable_progress_bar", "num_sanity_val_steps"}


# Keys added after rows were stored, at a default that computes exactly what the code did before
# the key existed: left out of the hash at that default, so earlier run ids stay valid.
NEUTRAL_DEFAULTS = {("cell", "layers"): 1, ("cell", "dropout"): 0.0}
NEUTRAL_DEFAULTS.update({  # issue 12: optimiser choice and schedule, the LMs' protocol, model options, own corpora
    ("optim", "name"): "adam", ("optim", "decay_after_epochs"): None, ("optim", "decay_factor"): 0.5,
    ("task", "protocol"): "context", ("task", "tie_weights"): False, ("task", "init_range"): None,
    ("task", "path"): None,  # translation rows change id anyway (issue 12 changes how BLEU is scored)
    # the adding rows stored before task.markers existed put one marker in each half: they are the
    # halves variant; the new default, anywhere, is a different task and gets new run ids
    ("task", "markers"): "halves",
})
NEUTRAL_DEFAULTS[(None, "stop_when_solved")] = False  # group None: a top-level key
NEUTRAL_DEFAULTS[(None, "tf32")] = False  # issue 22: every CPU row, and GPU matmuls, were full fp32
# issue 27: cell.recipe=none trains every parameter at one rate, as before the key existed (only expRNN
# declares a group; its rows under the paper's recipe, the new default, get new run ids)
NEUTRAL_DEFAULTS[("cell", "recipe")] = "none"
# IndRNN's u ~ U(0, 1) in every layer, what it was before recurrent_init existed (the default is now the authors')
NEUTRAL_DEFAULTS[("cell", "recurrent_init")] = "uniform01"


def config_hash(config: dict[str, Any]) -> str:
    ident = {k: v for k, v in config.items() if k not in PRESENTATION_KEYS and k != "hydra"}
    ident["trainer"] = {k: v for k, v in config.get("trainer", {}).items() if k not in PRESENTATION_TRAINER_KEYS}
    for (group, key), neutral in NEUTRAL_DEFAULTS.items():
        if group is None and key in ident and ident[key] == neutral:
            del ident[key]
        elif isinstance(ident.get(group), dict) and key in ident[group] and ident[group][key] == neutral:
            ident[group] = {k: v for k, v in ident[group].items() if k != key}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]


def job_run_id(cfg: DictConfig) -> str:
    """The id a job's row is stored under (results.run_path): names for people, the config hash for identity."""
    chash = config_hash(OmegaConf.to_container(cfg, resolve=True))
    return f"{cfg.task.name}-{cfg.cell.name}-gap{cfg.gap}-s{cfg.seed}-{chash[:8]}"
