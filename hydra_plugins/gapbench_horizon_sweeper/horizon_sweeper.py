"""The horizon sweeper: one gapbench.sweep.horizon_search.HorizonSearch per combination of the swept keys
(cell x seed x ...), all advanced together, one round of jobs at a time, through the configured
launcher (basic, joblib, slurm). Every job is an ordinary gapbench job, so a finished one is skipped
when the search is run again: a killed search resumes where it stopped and retrains nothing.

A job counts as solved by its stored row (results_dir/runs/<run_id>.json): under stop_when_solved
(on by default here) when it reached the task's criterion on the validation set (`solved_at_step`);
otherwise by the task's criterion on its final validation score where the row has one, else on its
test score. Each round prints one line per search; the brackets go to results_dir/horizons/<sweep_id>.json
after every round. The rows the jobs leave are the source of truth for the report's horizon estimate.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from gapbench.paths import atomic_write_json
from gapbench.sweep.horizon_search import HorizonSearch

HORIZONS = "horizons"


class Refusal(ValueError):
    """Bad input to the sweeper: `run.py`'s preflight prints it as one line and exits 2 before Hydra
    writes anything (HorizonSweeper.check); the sweep itself refuses the same way if started otherwise."""


def _refuse(message: str) -> None:
    raise Refusal(message)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def job_solved(row: dict[str, Any], task_cls: type) -> bool:
    """Whether a stored job row solved its task (see the module docstring)."""
    if row.get("status") == "diverged":
        return False
    if row.get("cfg.stop_when_solved") and "solved_at_step" in row:
        return row["solved_at_step"] is not None
    for key in (f"val/{row.get('score_name')}", "val_score"):
        value = row.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return bool(task_cls.is_solved(value, row["baseline"]))
    return bool(task_cls.is_solved(row["score"], row["baseline"]))


def _earlier_searches(path: Path, labels: set[str]) -> list[dict[str, Any]]:
    """The searches an earlier run of the same sweep wrote to `path` that this run does not redo
    (e.g. seeds 0-4 when the sweep is extended with seeds 5-9): the file keeps them."""
    try:
        old = json.loads(path.read_text())
        searches = old.get("searches", [])
        if not isinstance(searches, list) or not all(isinstance(s, dict) for s in searches):
            raise ValueError("'searches' is not a list of searches")
    except FileNotFoundError:
        return []
    except (OSError, ValueError, AttributeError) as e:
        _refuse(f"cannot read the earlier horizons of this sweep in {path} ({e}); move it away or fix it")
    return [s for s in searches if s.get("label") not in labels]


class HorizonSweeper(Sweeper):
    def __init__(self, factor: float = 1.5, grow: float = 2.0, min_gap: Optional[int] = None,
                 max_gap: int = 2000, params: Optional[Dict[str, str]] = None, lr_from: Optional[str] = None) -> None:
        super().__init__()
        self.factor, self.grow, self.min_gap, self.max_gap = factor, grow, min_gap, max_gap
        self.lr_from = lr_from
        self.params = params or {}
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    # -- the searches: one per combination of the swept keys ---------------------------------------
    def check(self, arguments: List[str], compose: Callable[[List[str]], DictConfig], results_dir: str,
              sweep_id: Optional[str], config_loader=None) -> None:
        """Every refusal of `sweep`, before Hydra starts (run.py's preflight): raises Refusal.
        `compose(overrides)` is one job's config."""
        self._plan(arguments, compose, config_loader)
        if sweep_id:
            _earlier_searches(self._out(results_dir, sweep_id), set())

    def _plan(self, arguments: List[str], compose, config_loader) -> tuple[list[dict], list[str]]:
        combos, swept = self._combinations(arguments, config_loader)
        searches, selection = [], self._selection()
        for combo in combos:
            search, task_cls, names = self._search_for(compose(combo))
            combo = combo + self._selected_lr(selection, combo, names)
            label = " ".join(o for o in combo if _key(o) in swept) or f"cell={names['cell']}"
            searches.append({"combo": [o for o in combo if _key(o) != "gap"], "label": label,
                             "search": search, "task": task_cls, "names": names, "runs": {}})
        return searches, combos

    @staticmethod
    def _out(results_dir: str, sweep_id: str) -> Path:
        from gapbench.paths import name_problem

        problem = name_problem("sweep_id", sweep_id)
        if problem:
            _refuse(problem)
        return Path(str(results_dir)).expanduser() / HORIZONS / f"{sweep_id}.json"

    def _combinations(self, arguments: List[str], config_loader=None) -> tuple[list[list[str]], list[str]]:
        parser = OverridesParser.create(config_loader=config_loader)
        overrides = parser.parse_overrides([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        for o in overrides:
            if o.get_key_element().lstrip("+~") == "gap" and o.is_sweep_override():
                _refuse("the horizon sweeper chooses the gaps itself; give one start gap (gap=G), not a list")
        swept = [o.get_key_element() for o in overrides if o.is_sweep_override()]
        return BasicSweeper.split_arguments(overrides, None)[0], swept

    def _search_for(self, cfg: DictConfig) -> tuple[HorizonSearch, type, dict[str, Any]]:
        from gapbench import tasks  # imports torch: not at module level, Hydra loads this plugin for `--help`

        task_cls = tasks.task_class(cfg.task.name)
        if not getattr(task_cls, "continuous_gap", True):
            _refuse(f"task {task_cls.name} has no continuous gap ({task_cls.gap_meaning}); the horizon sweeper "
                    f"needs one: sweep its valid gaps with the basic sweeper instead")
        if task_cls.solved_text is None:
            _refuse(f"task {task_cls.name} has no solved criterion, so it has no horizon to search; "
                    f"tasks with one: {', '.join(n for n in tasks.names() if tasks.task_class(n).solved_text)}")
        min_gap = max(task_cls.min_gap, self.min_gap or task_cls.min_gap)
        if not isinstance(cfg.gap, int) or not min_gap <= cfg.gap <= self.max_gap:
            _refuse(f"gap={cfg.gap!r} is not a valid start gap: give an integer in [{min_gap}, {self.max_gap}] "
                    f"(hydra.sweeper.min_gap / max_gap; task {task_cls.name}: gap = {task_cls.gap_meaning})")
        try:
            search = HorizonSearch(cfg.gap, min_gap, self.max_gap, self.factor, self.grow)
        except ValueError as e:
            _refuse(f"hydra.sweeper: {e}")
        return search, task_cls, {"task": cfg.task.name, "cell": cfg.cell.name, "seed": cfg.seed}

    def _selection(self) -> Optional[dict[str, Any]]:
        """The learning-rate selection of hydra.sweeper.lr_from (None without one); read once per sweep."""
        if not self.lr_from:
            return None
        from gapbench.analysis import lr_selection

        try:
            return lr_selection.read(self.lr_from)
        except lr_selection.SelectionError as e:
            _refuse(f"hydra.sweeper.lr_from: {e}")

    def _selected_lr(self, sel: Optional[dict[str, Any]], combo: list[str], names: dict[str, Any]) -> list[str]:
        """`optim.lr=<rate>` for this search's cell from the selection ([] without one)."""
        if sel is None:
            return []
        if any(_key(o) == "optim.lr" for o in combo):
            _refuse("optim.lr is given on the command line and by hydra.sweeper.lr_from; give one of them")
        if sel.get("task") not in (None, names["task"]):
            _refuse(f"hydra.sweeper.lr_from={self.lr_from} selected rates on task {sel['task']}, "
                    f"not on task {names['task']}")
        if names["cell"] not in sel["cells"]:
            _refuse(f"hydra.sweeper.lr_from={self.lr_from} has no rate for cell {names['cell']} "
                    f"(it has: {', '.join(sel['cells'])}); run its learning-rate sweep with this cell")
        return [f"optim.lr={sel['cells'][names['cell']]['selected']!r}"]

    def _row(self, ret: JobReturn) -> dict[str, Any]:
        from gapbench import results  # imports pandas: not at module level (see _search_for)

        from gapbench.config.identity import job_run_id

        _ = ret.return_value  # raises the job's own exception if it failed
        run_id = job_run_id(ret.cfg)
        row = results.read_run(Path(ret.cfg.results_dir).expanduser(), run_id)
        if row is None or row.get("status") not in ("finished", "diverged"):
            print(f"horizon search stopped: job {run_id} did not finish; run the same command again to resume "
                  f"(finished jobs are not trained again)", file=sys.stderr)
            sys.exit(1)
        return row

    def sweep(self, arguments: List[str]) -> List[Sequence[JobReturn]]:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        loader = self.hydra_context.config_loader
        sweep_dir = Path(self.config.hydra.sweep.dir)
        from gapbench.sweep.progress import sweep_id as sweep_id_of

        sweep_id = sweep_id_of(self.config)  # the id the jobs' rows and W&B group carry
        try:
            searches, combos = self._plan(arguments, lambda combo: loader.load_sweep_config(self.config, combo), loader)
            out = self._out(self.config.results_dir, sweep_id)
            earlier = _earlier_searches(out, {s["label"] for s in searches})
        except Refusal as e:  # run.py's preflight refuses these before Hydra starts; here for other entry points
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        extra = [] if any(_key(o) == "stop_when_solved" for c in combos for o in c) else ["stop_when_solved=true"]
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        if earlier:
            print(f"horizon search: keeping {len(earlier)} search(es) of an earlier run of sweep {sweep_id} "
                  f"in {out}", flush=True)

        returns: List[Sequence[JobReturn]] = []
        job_idx, round_no = 0, 0
        while True:
            todo = [(s, s["search"].next_gap()) for s in searches if not s["search"].done]
            if not todo:
                break
            round_no += 1
            batch = [s["combo"] + extra + [f"gap={gap}"] for s, gap in todo]
            if round_no == 1:  # composition errors surface before any job; later rounds differ only in gap
                self.validate_batch_is_legal(batch)
            print(f"horizon search, round {round_no}: {len(batch)} job(s)", flush=True)
            rets = self.launcher.launch(batch, initial_job_idx=job_idx)
            job_idx += len(batch)
            returns.append(rets)
            for (s, gap), ret in zip(todo, rets):
                row = self._row(ret)
                solved = job_solved(row, s["task"])
                s["search"].record(gap, solved)
                s["runs"][gap] = row["run_id"]
                search = s["search"]
                nxt = search.next_gap()
                print(f"  {s['label']}: gap {gap} {'solved' if solved else 'failed'} -> bracket {search.text()}"
                      + (f", next gap {nxt}" if nxt is not None else f" ({search.kind}, done)"), flush=True)
            atomic_write_json(out, self._summary(searches, sweep_id, earlier))
        print(f"horizons ({len(searches)} searches, {job_idx} jobs) -> {out}", flush=True)
        for s in searches:
            print(f"  {s['label']}: {s['search'].text()}", flush=True)
        return returns

    def _summary(self, searches: list[dict], sweep_id: str, earlier: list[dict]) -> dict[str, Any]:
        rows = list(earlier)
        for s in searches:
            row = {**s["names"], "label": s["label"], "overrides": s["combo"], "criterion": s["task"].solved_text,
                   **s["search"].as_dict()}
            for t in row["tried"]:
                t["run_id"] = s["runs"].get(t["gap"])
            rows.append(row)
        return {"sweep_id": sweep_id, "factor": self.factor, "grow": self.grow, "max_gap": self.max_gap,
                "searches": rows}
