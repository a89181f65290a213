"""The options of `edgetune agent serve`, declared beside the agent (argparse only, no imports
of the server, so `edgetune --help` stays fast)."""

from __future__ import annotations

import argparse
from typing import Any


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
    parser.add_argument("--state-dir", required=True, help="where installed models are kept")
    parser.add_argument(
        "--trusted-key", required=True, help="Ed25519 public key (PEM) bundles must be signed with"
    )
    parser.add_argument(
        "--token-file",
        default=None,
        help="file holding the bearer token pushes must carry (default: $EDGETUNE_AGENT_TOKEN)",
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
    }
