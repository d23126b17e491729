"""`tollway serve`: run the gateway (the one command that talks to upstreams)."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tollway.cli.common import ConfigOpt, console, err, read_settings, store_name, with_store
from tollway.config import DEFAULT_CONFIG_ENV, deployment_problem
from tollway.governance.identity import create_key
from tollway.observability import configure_logging
from tollway.store.db import Database
from tollway.store.keys import KeyStore

if TYPE_CHECKING:
    import uvicorn


def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default from config).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default from config).")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes sharing the port (default from config).")] = None,
) -> None:
    """Run the gateway."""
    import uvicorn

    from tollway.app import create_app
    from tollway.first_key import hand_over
    from tollway.serving import http_protocol, raise_file_limit

    settings = read_settings(config, upstream_secrets=True)
    n_workers = workers or settings.server.workers
    problem = deployment_problem(settings, n_workers)
    if problem:
        err.print(f"[red]config error:[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)

    async def first_key(db: Database) -> str | None:
        keys = KeyStore(db)
        if await keys.count():
            return None
        _, secret = await create_key(keys, "default")
        return secret

    secret = with_store(settings, first_key, create=True)
    console.print(f"Store: {store_name(settings)}", highlight=False, soft_wrap=True)
    if secret:  # on the terminal, or in a 0600 file when not attached to one (tollway/first_key.py)
        hand_over(secret, Path(settings.server.first_key_file), console)
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    configure_logging()
    raise_file_limit()
    listening = f"Tollway listening on http://{bind_host}:{bind_port} ({n_workers} worker(s))"
    options: dict[str, Any] = {"host": bind_host, "port": bind_port, "loop": "uvloop",
                               # uvicorn's httptools protocol, each answer's head and body in one
                               # write, with the header timeout and connection cap (tollway/serving.py).
                               "http": http_protocol(settings.server.header_timeout, settings.server.max_connections),
                               "timeout_keep_alive": settings.server.keep_alive_timeout,
                               "access_log": False, "log_level": "warning", "lifespan": "on", "log_config": None,
                               "timeout_graceful_shutdown": settings.server.shutdown_grace,
                               # No `server: uvicorn` on every response: it names the software to an
                               # attacker and costs a header (uvicorn regex-checks each one it writes).
                               "server_header": False}
    if n_workers == 1:
        server = _announcing_server(uvicorn.Config(create_app(settings), **options), listening)
        with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind; we say so below
            server.run()
        if not server.started:
            _cannot_listen(bind_host, bind_port)
        return
    # Worker processes build their own app from the same config file; the supervisor binds the
    # port first (uvicorn exits 1, logging the OS error, if it cannot), so the line is true.
    if config:
        os.environ[DEFAULT_CONFIG_ENV] = str(Path(config).resolve())
    from uvicorn.supervisors import Multiprocess

    multi = uvicorn.Config("tollway.app:app_from_env", factory=True, workers=n_workers, **options)
    try:
        sock = multi.bind_socket()
    except SystemExit:
        _cannot_listen(bind_host, bind_port)
    console.print(listening, highlight=False)
    Multiprocess(multi, sockets=[sock]).run()


def _cannot_listen(host: str, port: int) -> None:
    err.print(f"Tollway could not start on http://{host}:{port} (the reason is logged above: a port in use, "
              "an address this machine does not have, or no permission).", highlight=False, soft_wrap=True,
              markup=False)
    raise typer.Exit(1)


def _announcing_server(config: uvicorn.Config, line: str) -> uvicorn.Server:
    """uvicorn's server, saying "listening" only once the app started and the socket is bound:
    a line printed before could be followed by "address already in use"."""
    import uvicorn

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                console.print(line, highlight=False)

    return AnnouncingServer(config)
