"""`edgetune fleet federate`: its arguments and what it runs (rounds.run_rounds)."""

from __future__ import annotations

import argparse
import json
import time

from edgetune.components.federate.core import FederateConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the federate command's arguments; FederateConfig's fields become --options."""
    parser.add_argument(
        "--bundle", required=True, help="the bundle the fleet serves (file or folder)"
    )
    parser.add_argument(
        "--data", required=True, help="preprocess's output folder (its test split judges)"
    )
    parser.add_argument("--fleet", required=True, help="the fleet YAML file")
    parser.add_argument(
        "--trusted-key", required=True, help="public key the bundles are signed with"
    )
    parser.add_argument(
        "--signing-key", required=True, help="Ed25519 private key (PEM) for the new bundle"
    )
    parser.add_argument(
        "--out", default="runs/federate", help="folder for round reports and bundles"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds to run (stops at the first not shipped)"
    )
    parser.add_argument(
        "--tags", default="", help="only devices carrying all these tags (comma-separated)"
    )
    parser.add_argument(
        "--run-name", default="", help="MLflow parent run name (default: federate-<time>)"
    )
    parser.add_argument(
        "--tracking-uri",
        default="",
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)",
    )
    parser.add_argument("--experiment", default="edgetune")
    for name, info in FederateConfig.model_fields.items():
        flag = f"--{name.replace('_', '-')}"
        if info.annotation is bool:
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"),
                                default=info.default, help=info.description)  # fmt: skip
        else:
            parser.add_argument(
                flag, type=info.annotation, default=info.default, help=info.description
            )


def main(argv: list[str]) -> int:
    """Parses `argv`, runs the rounds and prints one JSON line per round (reports in --out)."""
    from edgetune.components.federate.rounds import run_rounds

    parser = argparse.ArgumentParser(prog="edgetune fleet federate", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    config = FederateConfig(**{name: getattr(args, name) for name in FederateConfig.model_fields})
    results = run_rounds(
        args.bundle, args.data, args.fleet, args.trusted_key, args.signing_key, args.out, config,
        rounds=args.rounds, tags=args.tags, run_name=args.run_name or f"federate-{time.strftime('%Y%m%d-%H%M%S')}",
        tracking_uri=args.tracking_uri, experiment=args.experiment,
    )  # fmt: skip
    for result in results:
        print(json.dumps({"metrics": result["metrics"], "bundle": result.get("bundle"),
                          "stopped": result["round"]["stopped"], "gate": result["round"]["gate"]}))  # fmt: skip
    return 0
