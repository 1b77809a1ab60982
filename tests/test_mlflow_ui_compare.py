"""Routing operators side by side in the real MLflow UI, checked in headless Chromium (Debian's package).

The runs are made by the flow's own MLflow code (parent sweep run, one child per point, a stage run nested under
each child whose metric history is copied up); an `mlflow server` started like the services helper starts it
serves them; the compare view must show every point's name, its grounded TA/MQ and its final loss, with the
evaluation metrics first. The screenshot is kept in the test's temp dir (and copied to `$SARA_SCREENSHOT_DIR`).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.browser import missing_reason, screenshot
from flows.mlflow_runs import (
    COMPARE_PLOT,
    UI_PANELS_TO_CLOSE,
    collect_point_metrics,
    compare_url,
    ensure_experiment,
    start_point_run,
    start_sweep_run,
)
from flows.net import wait_http
from flows.plan import PointPlan, SweepPlan, build_points, exp_name
from flows.services import mlflow_server_args
from flows_testlib import PortTaken, on_a_free_port, port_taken
from sara.config import Params

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing_reason() is not None, reason=f"no headless browser: {missing_reason()}"),
]

# Final losses and grounded TA/MQ chosen to print exactly in the UI (it rounds to a few significant digits).
FINAL_LOSS = {"and": 0.125, "or": 0.375, "xor": 0.625}
TA_MEAN = {"and": 3.125, "or": 3.875, "xor": 2.625}
MQ_MEAN = {"and": 2.25, "or": 2.75, "xor": 1.5}


def _sweep(root: Path, uri: str) -> tuple[str, list[str], str]:
    """A sweep over the three operators as the flow records it; returns (experiment id, child ids, parent id)."""
    client = MlflowClient(uri)
    points = build_points(["sara"], list(FINAL_LOSS), [1], [0.5])
    plan = SweepPlan("ui", root, "sara", [], [], {}, [
        PointPlan(p, exp_name("ui", p), [f"rubric@{p.run}", f"train_dit@{p.run}"], [f"train_dit@{p.run}", f"rubric@{p.run}"],
                  p.overrides(), Params())
        for p in points
    ])  # fmt: skip
    exp_id = ensure_experiment(client, "sara", root)
    parent = start_sweep_run(client, exp_id, plan, "flow-ui", {"ops": list(FINAL_LOSS)})
    children = []
    for point in plan.points:
        child = start_point_run(client, exp_id, parent, plan, point, "flow-ui", f"task-{point.point.op}")
        run, op = point.point.run, point.point.op
        stage = client.create_run(exp_id, run_name=f"train_dit/{run}",
                                  tags={"mlflow.parentRunId": child, "dvc.stage": f"train_dit@{run}"})  # fmt: skip
        for step, factor in enumerate((4.0, 2.0, 1.0)):  # a short falling curve ending at the chosen value
            client.log_metric(stage.info.run_id, "loss", FINAL_LOSS[op] * factor, step=step)
        client.set_terminated(stage.info.run_id)
        # the point's own evaluation, under the names `sara rubric --run <run>` logs
        rubric = client.create_run(exp_id, run_name=f"rubric/{run}", tags={"mlflow.parentRunId": child, "dvc.stage": f"rubric@{run}"})
        client.log_metric(rubric.info.run_id, "rubric/grounded/TA_mean", TA_MEAN[op])
        client.log_metric(rubric.info.run_id, "rubric/grounded/MQ_mean", MQ_MEAN[op])
        client.set_terminated(rubric.info.run_id)
        collect_point_metrics(client, exp_id, child, point, point.stages)  # as the flow: DAG order, training first
        client.set_terminated(child)
        children.append(child)
    client.set_terminated(parent)
    return exp_id, children, parent


@pytest.mark.slow(wall_s=20)  # seconds on the 2-core machine: handed out early (tests/xdist_files.py)
def test_compare_view_shows_each_routing_operator_and_its_metrics(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp_id, children, _ = _sweep(tmp_path, uri)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = tmp_path / "mlflow.log"

    def start(port: int) -> subprocess.Popen:
        with log.open("ab") as out:
            server = subprocess.Popen(
                mlflow_server_args(tmp_path, port, env), cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            wait_http(f"http://127.0.0.1:{port}/health", timeout=180, proc=server)
        except RuntimeError:  # it exited before answering
            if port_taken(log.read_text(errors="replace")):
                raise PortTaken(port) from None
            raise
        except BaseException:
            os.killpg(server.pid, signal.SIGTERM)
            raise
        return server

    port, server = on_a_free_port(start)
    try:
        shot = tmp_path / "mlflow_compare.png"
        expected = ["Comparing 3 Runs", "rubric/grounded/TA_mean", "rubric/grounded/MQ_mean", "routing_op"]
        expected += [f"sara-{op}/seed1/lam0.5" for op in FINAL_LOSS]
        expected += [str(v) for table in (TA_MEAN, MQ_MEAN, FINAL_LOSS) for v in table.values()]
        text = screenshot(
            compare_url(f"http://127.0.0.1:{port}", children, [exp_id]), shot, expected,
            timeout=120, width=1600, height=1800, dismiss=UI_PANELS_TO_CLOSE, ready=(COMPARE_PLOT,),
        )  # fmt: skip
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    # The metric rows list each operator's TA/MQ and final loss; the tag rows tie each column to its Prefect task run.
    assert all(f"task-{op}" in text for op in FINAL_LOSS)
    # The parallel-coordinates plot opens on the first shared metric: an evaluation metric, not a training loss.
    assert "Metrics:\nrubric/grounded/TA_mean\n" in text, text[:800]
    keep = os.environ.get("SARA_SCREENSHOT_DIR")  # e.g. docs/img when refreshing the documentation
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / shot.name).write_bytes(shot.read_bytes())
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 1600
    print(f"screenshot: {shot}")
