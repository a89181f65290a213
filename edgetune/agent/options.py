"""The options of `edgetune agent serve`, declared beside the agent."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from edgetune.agent.limits import AgentLimits
from edgetune.errors import EdgetuneError


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the `agent serve` options to `parser`."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int, help="TCP port to bind (on --host)")
    where.add_argument(
        "--fd",
        type=int,
        help="an already bound and listening socket inherited from the parent process "
        "(how the local fleet starts agents without a port race)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="exit when this process (the one that started the agent) is gone",
    )
    parser.add_argument("--state-dir", required=True, help="where installed models are kept")
    parser.add_argument(
        "--trusted-key", required=True, help="Ed25519 public key (PEM) bundles must be signed with"
    )
    parser.add_argument(
        "--token-file",
        default=None,
        help="file (mode 0600) holding the bearer token pushes must carry, at least 32 "
        "bytes (default: $EDGETUNE_AGENT_TOKEN)",
    )
    parser.add_argument("--tls-cert", default=None, help="serve HTTPS with this PEM certificate")
    parser.add_argument("--tls-key", default=None, help="the PEM private key of --tls-cert")
    parser.add_argument(
        "--predict-token-file", default=None, help="also require a bearer token on /predict"
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin allowed to call the agent, e.g. https://app.local (repeatable)",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name accepted besides IP addresses and localhost (repeatable)",
    )
    parser.add_argument(
        "--pull",
        default=None,
        metavar="URI",
        help="also follow this signed pull channel (folder or fsspec URI, see edgetune publish)",
    )
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between polls")
    parser.add_argument(
        "--device-id", default=None, help="this device's id in the channel (waves, status file)"
    )
    defaults = AgentLimits()
    parser.add_argument("--max-bundle-bytes", type=int, default=defaults.max_bundle_bytes)
    parser.add_argument("--max-image-bytes", type=int, default=defaults.max_image_bytes)
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=defaults.max_pixels,
        help="largest image /predict decodes (width x height, read from the header first)",
    )
    parser.add_argument("--predict-concurrency", type=int, default=defaults.predict_concurrency)
    parser.add_argument(
        "--max-connections",
        type=int,
        default=defaults.max_connections,
        help="connections served at once; more are answered 503",
    )
    parser.add_argument(
        "--max-samples",
        type=int,
        default=defaults.max_samples,
        help="labelled samples kept for personalization (oldest dropped first)",
    )
    parser.add_argument(
        "--max-sample-store-bytes",
        type=int,
        default=defaults.max_sample_store_bytes,
        help="bytes those samples may take on disk (oldest dropped first)",
    )
    parser.add_argument(
        "--min-gain-points",
        type=float,
        default=1.0,
        help="accuracy points a personal head must gain on held-out samples",
    )


def serve_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of `edgetune.agent.server.serve` from parsed options."""
    return {
        "host": args.host,
        "port": args.port,
        "fd": args.fd,
        "state_dir": args.state_dir,
        "trusted_key": args.trusted_key,
        "token_file": args.token_file,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "predict_token_file": args.predict_token_file,
        "allow_origins": args.allow_origin,
        "allow_hosts": args.allow_host,
        "pull": _pull_config(args),
        "parent_pid": args.parent_pid,
        "limits": replace(
            AgentLimits(),
            max_bundle_bytes=args.max_bundle_bytes,
            max_image_bytes=args.max_image_bytes,
            max_pixels=args.max_pixels,
            predict_concurrency=args.predict_concurrency,
            max_connections=args.max_connections,
            max_samples=args.max_samples,
            max_sample_store_bytes=args.max_sample_store_bytes,
        ),
        "personalize": _personalize_config(args),
    }


def _personalize_config(args: argparse.Namespace) -> Any:
    from edgetune.agent.personal import (
        PersonalizeConfig,
    )  # the CLI parser must not import the agent

    if args.min_gain_points < 0:
        raise EdgetuneError(f"--min-gain-points={args.min_gain_points}; must be >= 0")
    return PersonalizeConfig(min_gain_points=args.min_gain_points)


def _pull_config(args: argparse.Namespace) -> Any:
    from edgetune.agent.pull import PullConfig  # the CLI parser must not import the agent

    if args.pull is None:
        return None
    if not args.device_id:
        raise EdgetuneError("--pull needs --device-id (names the device's wave and status file)")
    return PullConfig(args.pull, args.interval, args.device_id)
