"""`sara sweep`: start an ablation sweep on the served deployment and tell its story in the terminal.

    sara sweep --ops and,or,xor --params-file flows/profiles/micro.yaml
    sara sweep --methods sft,sara --ops or --seeds 0,1,2 --lam-trd 0.25,0.5 --set train.steps=100

`prefect deployment run ... --watch` prints only state changes; this wrapper submits the same deployment
(`sara/ablation-sweep`, served by `scripts/services.sh start`) and follows the flow run's own log: the plan (DAG,
shared stages, each point's targets), each point's stage output and its result as it finishes (`[2/3] point
sara-or/... finished: rubric/grounded/TA_mean ...`), the failure reason of a failed point or a bad parameter, and
at the end the comparison table (also a Prefect artifact on the flow run and `comparison.md` on the MLflow sweep
run). Exit status 0 when the sweep completed, 1 otherwise. Without the services it says so in one line.
Prefect's state stays in the repository's `.prefect/` (PREFECT_HOME), nothing global.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

DEPLOYMENT = "sara/ablation-sweep"
START_HINT = "start them with `scripts/services.sh start`"


class SweepError(RuntimeError):
    """Why a sweep could not be submitted or followed (one line for the user)."""


def _list(text: str, cast=str) -> list:
    return [cast(x) for x in text.split(",") if x.strip()]


def _value(text: str) -> Any:
    """`--set key=value`: the value as YAML (numbers, booleans, lists), as DVC parses `-S`."""
    import yaml

    return yaml.safe_load(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", type=_list, help="comma list of sft, videorepa, moalign, sara (default: sara)")
    parser.add_argument("--ops", type=_list,
                        help="comma list of and, or, xor, none (default: the operators of the DAG's SARA runs)")
    parser.add_argument("--seeds", type=lambda t: _list(t, int), help="comma list of train.seed values")
    parser.add_argument("--lam-trd", type=lambda t: _list(t, float), help="comma list of trd.lam_trd values")
    parser.add_argument("--params-file", help="params file whose differences from params.yaml become overrides")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override for every point, e.g. train.steps=100 (repeatable)")
    parser.add_argument("--targets", type=_list, help="comma list of stages per point ({run}, {op}, ... filled in)")
    parser.add_argument("--name", dest="sweep_name", help="sweep name (MLflow parent run, DVC experiments)")
    parser.add_argument("--gpu-slots", type=int, help="points that may hold a GPU at once")
    parser.add_argument("--dry-run", action="store_true", help="plan and validate only")


def flow_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The deployment's parameters from the command line (only those given: the flow has the defaults)."""
    out: dict[str, Any] = {}
    for key in ("methods", "ops", "seeds", "lam_trd", "params_file", "targets", "sweep_name", "gpu_slots"):
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SweepError(f"--set {item!r}: expected KEY=VALUE, e.g. train.steps=100")
        overrides[key.strip()] = _value(value)
    if overrides:
        out["overrides"] = overrides
    if args.dry_run:
        out["dry_run"] = True
    return out


def prefect_api(root: Path) -> str:
    """PREFECT_API_URL, or the server `scripts/services.sh start` runs for this checkout; SweepError when none answers."""
    from flows.services import healthy, read_state

    url = os.environ.get("PREFECT_API_URL")
    if not url:
        server = next((s for s in read_state(root) if s.name == "prefect"), None)
        url = f"{server.url}/api" if server else None
    if not url or not healthy(f"{url.rstrip('/')}/health"):
        where = f" at {url}" if url else ""
        raise SweepError(f"the Prefect services are not running{where}: {START_HINT}")
    return url


def submit(parameters: dict[str, Any]) -> Any:
    """Create a flow run of the deployment; SweepError when the deployment is not served."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(DEPLOYMENT)
        except ObjectNotFound:
            raise SweepError(f"deployment {DEPLOYMENT} is not served: {START_HINT}") from None
        return client.create_flow_run_from_deployment(deployment.id, parameters=parameters)


def follow(flow_run_id: Any, out=print, poll_s: float = 1.0) -> Any:
    """Print the flow run's log lines (its tasks' included) as they arrive; return the final flow run."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    seen = 0
    task_names: dict[Any, str] = {}
    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            final = run.state is not None and run.state.is_final()
            while True:  # drain every log line written so far
                logs = client.read_logs(log_filter=log_filter, sort=LogSort.TIMESTAMP_ASC, offset=seen, limit=200)
                for log in logs:
                    if log.task_run_id and log.task_run_id not in task_names:
                        task_names[log.task_run_id] = client.read_task_run(log.task_run_id).name
                    who = task_names.get(log.task_run_id, "flow")
                    for i, line in enumerate(log.message.splitlines() or [""]):
                        prefix = f"{log.timestamp:%H:%M:%S} {who:>24.24s} | " if i == 0 else " " * 34 + "| "
                        out(prefix + line)
                seen += len(logs)
                if len(logs) < 200:
                    break
            if final:
                return run
            time.sleep(poll_s)  # polling interval of the Prefect API while the sweep runs


def comparison_artifact(flow_run_id: Any) -> str | None:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                                           type=ArtifactFilterType(any_=["markdown"]))
        )
    tables = [a for a in found if (a.key or "").startswith("comparison-")]
    return tables[-1].data if tables else None


def main(argv: list[str] | None = None, out=print) -> int:
    from flows.env import apply_orchestration_defaults
    from sara.env import repo_root

    parser = argparse.ArgumentParser(prog="sara sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    root = repo_root()
    apply_orchestration_defaults(root)  # PREFECT_HOME=<repo>/.prefect before prefect is imported
    try:
        parameters = flow_parameters(args)
        os.environ["PREFECT_API_URL"] = prefect_api(root)
        run = submit(parameters)
        out(f"sweep: flow run {run.name} ({run.id}) of {DEPLOYMENT}, parameters {json.dumps(parameters)}")
        out(f"       Prefect UI: {os.environ['PREFECT_API_URL'].removesuffix('/api')}/runs/flow-run/{run.id}")
        final = follow(run.id, out)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    state = final.state
    if state.is_completed():
        table = comparison_artifact(final.id)
        if table:
            out("\n" + table)
        out(f"sweep {state.name}")
        return 0
    out(f"sweep {state.name}: {state.message or 'no message'}")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
