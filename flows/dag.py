"""The DVC pipeline as data: stage names, the params each stage reads, and who depends on whom.

Read from dvc.yaml through DVC's own index (foreach/matrix already expanded), so the flow follows the DAG as it
grows and never keeps a second copy of it. Nothing here runs a stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sara.runs import Row, row_of_stage_item, split_stage_name


def stage_base(name: str) -> str:
    """`train_dit-sara-or` (or a foreach `train_dit@sara-or`) -> `train_dit`; a plain stage name is its own base."""
    return name.split("@", 1)[0] if "@" in name else split_stage_name(name)[0]


@dataclass(frozen=True)
class StageInfo:
    name: str  # DVC address, e.g. `masks` or `train_dit-sara-or`
    params: tuple[str, ...]  # params.yaml keys or sections the stage lists (`train`, `trd.lam_trd`)
    upstream: frozenset[str]  # stages whose outputs this stage reads directly
    # DVC's run cache can restore the stage (no `persist: true` output): a temp experiment then skips it.
    restorable: bool = True
    # `dvc freeze`: DVC never reproduces it (a base brought in from another machine: scripts/lab_base_bundle.py)
    frozen: bool = False

    @property
    def base(self) -> str:
        """Stage name without its run: `train_dit-sara-or` (or a foreach `train_dit@sara-or`) -> `train_dit`."""
        return stage_base(self.name)

    @property
    def item(self) -> str | None:
        """The run of a per-run stage (`train_dit-sara-or` -> `sara-or`; a foreach/matrix item after `@`); None
        for a plain stage. Stage names themselves never contain `-` (sara/pipeline.py)."""
        if "@" in self.name:
            return self.name.split("@", 1)[1]
        return split_stage_name(self.name)[1]

    @property
    def row(self) -> Row | None:
        """The run (or `base` / `oracle` row) a per-run stage measures, from the run vocabulary; None otherwise."""
        return row_of_stage_item(self.item)

    def reads(self, key: str) -> bool:
        """True when the stage depends on params key `key` (listed itself, or through its section)."""
        return any(p == "" or key == p or key.startswith(p + ".") or p.startswith(key + ".") for p in self.params)


@dataclass(frozen=True)
class Dag:
    stages: dict[str, StageInfo] = field(default_factory=dict)

    def ancestors(self, names: set[str]) -> set[str]:
        """Every stage the given stages need, transitively (the given stages excluded)."""
        seen: set[str] = set()
        todo = [u for n in names for u in self.stages[n].upstream]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(self.stages[n].upstream)
        return seen - names

    def needed_by(self, targets: list[str] | None) -> set[str]:
        """The targets and every stage they need; every stage when no targets are given."""
        return set(self.stages) if not targets else set(targets) | self.ancestors(set(targets))

    def descendants(self, names: set[str]) -> set[str]:
        down: dict[str, set[str]] = {n: set() for n in self.stages}
        for s in self.stages.values():
            for u in s.upstream:
                down[u].add(s.name)
        seen: set[str] = set()
        todo = [d for n in names for d in down[n]]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(down[n])
        return seen

    def leaves(self, names: set[str]) -> list[str]:
        """Stages of `names` that no other stage of `names` depends on: enough to name as `dvc exp run` targets."""
        needed = {u for n in names for u in self.stages[n].upstream}
        return sorted(names - needed)

    def topological(self, names: set[str]) -> list[str]:
        order: list[str] = []
        done: set[str] = set()

        def visit(n: str) -> None:
            if n in done:
                return
            done.add(n)
            for u in sorted(self.stages[n].upstream):
                if u in names:
                    visit(u)
            order.append(n)

        for n in sorted(names):
            visit(n)
        return order


def load_dag(repo: Path) -> Dag:
    """Read dvc.yaml (and dvc.lock-free index) of `repo`; raise FileNotFoundError naming the missing file."""
    if not (repo / "dvc.yaml").is_file():
        raise FileNotFoundError(f"{repo / 'dvc.yaml'} not found: the flow needs the repository's DVC pipeline")
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        index = dvc_repo.index
        graph = index.graph  # edge (a, b): stage a reads an output of stage b
        stages: dict[str, StageInfo] = {}
        for stage in index.stages:
            params: list[str] = []
            for dep in stage.deps:
                if isinstance(dep, ParamsDependency):
                    params.extend(dep.params or [""])  # no keys listed: the stage reads the whole file
            upstream = frozenset(_address(repo, b) for _, b in graph.out_edges(stage))
            restorable = not any(out.persist for out in stage.outs)
            stages[_address(repo, stage)] = StageInfo(_address(repo, stage), tuple(params), upstream, restorable,
                                                      frozen=bool(stage.frozen))
    return Dag(stages)


def _address(repo: Path, stage) -> str:
    """The stage's name as `dvc` understands it when run at the repository root (DVC's own `addressing` is
    relative to the current directory of this process, which need not be the repository)."""
    rel = Path(stage.dvcfile.path).resolve().relative_to(repo.resolve())
    return stage.name if str(rel) == "dvc.yaml" else f"{rel}:{stage.name}"
