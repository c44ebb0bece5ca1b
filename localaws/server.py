"""Run the local AWS: moto in server mode plus Conveyor's rollout simulator and control API.

One process serves every AWS API moto knows (ECS, ECR, ELBv2, EC2, STS, IAM, ...) on one port,
with ECS deployments that move like ECS's. See docs/localaws.md.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from localaws.control import LocalAwsApp
from localaws.fidelity import RequestChecker
from localaws.rollout import DEFAULT_MINUTE_SECONDS
from localaws.world import World

logger = logging.getLogger(__name__)

READY_MESSAGE = "conveyor local-aws ready at {url}"
SEEDS = ("demo",)


def build_app(world: World) -> LocalAwsApp:
    """The WSGI application for ``world``: control API and faults in front of moto.

    Importing moto's server (Flask and every backend's URL map) is the slow part of starting, so
    it happens here rather than at import time of this module.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from localaws import ecs_patches, moto_fixes

    ecs_patches.install(world.simulator)
    ecs_patches.install_tasks(world.tasks)
    moto_fixes.install()

    def create_app(service: Any) -> Any:  # moto types it as a Literal of its service names
        if service == "cloudformation":
            # Patched when moto first serves CloudFormation: importing it costs startup time.
            from localaws.cloudformation import api as cloudformation_api

            cloudformation_api.install(world.stacks)
        return create_backend_app(service)

    moto_app = DomainDispatcherApplication(create_app)
    # Stacks make their resources through moto's app, past the faults and limits of clients.
    world.stacks.attach(moto_app)
    # Clients' requests are checked against botocore's model; the stacks' own calls are not.
    return LocalAwsApp(RequestChecker(moto_app), world)


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    rollout_seconds: float = 10.0,
    seed: str | None = None,
    ready: Callable[[str], None] | None = None,
    minute_seconds: float = DEFAULT_MINUTE_SECONDS,
) -> None:
    """Start, seed if asked, then call ready(url) (default: print one line 'conveyor local-aws ready at http://HOST:PORT' to stdout, flushed), then serve until SIGINT/SIGTERM."""  # noqa: E501 - the contract, verbatim
    if seed is not None and seed not in SEEDS:
        raise ValueError(f"unknown seed {seed!r}; known: {', '.join(SEEDS)}")
    if rollout_seconds < 0:
        raise ValueError(f"rollout_seconds must be >= 0, got {rollout_seconds}")
    if minute_seconds < 0:
        raise ValueError(f"minute_seconds must be >= 0, got {minute_seconds}")
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    world = World(rollout_seconds, minute_seconds)
    app = build_app(world)
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    bound_port = server.server_port
    # A wildcard bind is reachable on loopback; clients need an address they can connect to.
    client_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - compared, not bound
    if ":" in client_host:
        client_host = f"[{client_host}]"  # an IPv6 literal in a URL
    url = f"http://{client_host}:{bound_port}"

    stop = threading.Event()
    _install_signal_handlers(stop)
    server_thread = threading.Thread(target=server.serve_forever, name="localaws-http", daemon=True)
    server_thread.start()
    world.simulator.start()
    world.stacks.start()
    try:
        if seed == "demo":
            from localaws.seed import seed_demo

            seed_demo(url)
        (ready or _print_ready)(url)
        # Wake up regularly: a signal delivered to another thread only runs its Python handler
        # when the main thread executes bytecode, which a wait without timeout never does.
        while not stop.wait(0.25):
            pass
    finally:
        world.stacks.stop()
        world.simulator.stop()
        server.shutdown()
        server_thread.join(timeout=5)


def _print_ready(url: str) -> None:
    print(READY_MESSAGE.format(url=url), flush=True)


def _install_signal_handlers(stop: threading.Event) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        # Signals are delivered to the main thread only; an embedding caller stops us otherwise.
        logger.debug("serve() not on the main thread: SIGINT/SIGTERM handlers not installed")
        return
    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
