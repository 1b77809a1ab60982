"""`python -m flows.serve`: serve flow `sara` as deployment `sara/ablation-sweep` against a Prefect server.

Needs `PREFECT_API_URL` pointing at a running server (`python -m flows.services start` sets everything up).
Then: `prefect deployment run sara/ablation-sweep --param ops='["and","or"]' --param seeds='[0,1]'`.
The process polls the server for new runs of the deployment and runs them here, in the repository root;
SIGTERM (or Ctrl-C) stops it and pauses the deployment.
"""

from __future__ import annotations

import argparse
import os

from flows.env import apply_orchestration_defaults

DEPLOYMENT = "ablation-sweep"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__)
    parser.add_argument("--name", default=DEPLOYMENT, help="deployment name")
    parser.add_argument("--limit", type=int, default=4, help="flow runs executed at the same time by this process")
    args = parser.parse_args(argv)
    apply_orchestration_defaults()
    if not os.environ.get("PREFECT_API_URL"):
        parser.error("PREFECT_API_URL is not set: start the server first (python -m flows.services start)")
    from flows.sara_flow import sara

    sara.serve(
        name=args.name,
        description="Ablation sweep: methods x routing operators x seeds x lambda_TRD, each point a DVC experiment",
        tags=["sara", "sweep"],
        limit=args.limit,
        print_starting_message=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
