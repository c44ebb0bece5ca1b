"""Commands that serve: ``dashboard`` (the read-only page) and ``local-aws`` (development)."""

from __future__ import annotations

import sys

import click

from producers.cli import core
from producers.cli.exit_codes import ExitCode


@click.command()
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--tls-cert",
    metavar="FILE",
    help="PEM certificate (chain): serve HTTPS [CONVEYOR_DASHBOARD_TLS_CERT].",
)
@click.option(
    "--tls-key", metavar="FILE", help="PEM private key of --tls-cert [CONVEYOR_DASHBOARD_TLS_KEY]."
)
@click.option(
    "--insecure-http",
    is_flag=True,
    default=None,
    help="Serve plain HTTP on an address other than loopback: only behind a proxy that "
    "terminates TLS [CONVEYOR_DASHBOARD_INSECURE_HTTP].",
)
def dashboard(
    address: str,
    port: int,
    tls_cert: str | None,
    tls_key: str | None,
    insecure_http: bool | None,
) -> None:
    """Serve the read-only deployments page (needs CONVEYOR_DASHBOARD_BASIC_AUTH).

    Plain HTTP only on loopback: elsewhere give --tls-cert and --tls-key, or --insecure-http
    behind a proxy that terminates TLS (basic authentication sends the password each request).
    """
    from producers.client import ConveyorClient
    from producers.dashboard import (
        AUTH_VARIABLE,
        DashboardConfigError,
        check_exposure,
        is_loopback,
        make_server,
        parse_credentials,
        tls_context,
    )

    settings = core.settings()
    secret = settings.dashboard_basic_auth
    cert = tls_cert or settings.dashboard_tls_cert
    key = tls_key or settings.dashboard_tls_key
    allow_http = settings.dashboard_insecure_http if insecure_http is None else insecure_http
    try:
        credentials = parse_credentials(secret.get_secret_value() if secret else None)
        context = tls_context(cert, key)
        check_exposure(address, context is not None, allow_http)
    except DashboardConfigError as exc:
        core.usage_error(str(exc))
    try:
        server = make_server(ConveyorClient(settings), address, port, credentials, context)
    except OSError as exc:
        core.usage_error(f"cannot listen on {address}:{port}: {exc.strerror or exc}")
    bound = server.server_address[1]
    scheme = "https" if context is not None else "http"
    click.echo(f"dashboard on {scheme}://{address}:{bound}/ (Ctrl-C stops it)", err=True)
    if context is None and not is_loopback(address):
        click.echo(
            f"conveyor: warning: plain HTTP on {address} (--insecure-http): {AUTH_VARIABLE}'s "
            "passwords cross the network in clear unless a proxy in front terminates TLS",
            err=True,
        )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)
    finally:
        server.server_close()


@click.command("local-aws")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=4566, show_default=True, help="0 picks a free port.")
@click.option(
    "--rollout-seconds",
    type=float,
    default=10.0,
    show_default=True,
    help="How long a simulated healthy rollout takes.",
)
@click.option("--seed", type=click.Choice(["demo"]), default=None, help="Create a demo world.")
def local_aws(host: str, port: int, rollout_seconds: float, seed: str | None) -> None:
    """Serve a local AWS (ECS, ECR, ELBv2, EC2, STS, IAM, CloudFormation) with real rollouts."""
    try:
        from localaws.server import serve
    except ImportError as exc:
        core.usage_error(
            "the local AWS is not installed; it is a distribution of its own in Conveyor's "
            f"source tree: pip install -e ./localaws (make install does this) ({exc})"
        )
    serve(host=host, port=port, rollout_seconds=rollout_seconds, seed=seed)
