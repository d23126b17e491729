"""`tollway serve`: run the gateway (the one command that talks to upstreams)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from tollway.cli.common import ConfigOpt, console, err, read_settings, with_store
from tollway.config import DEFAULT_CONFIG_ENV, deployment_problem
from tollway.governance.identity import create_key
from tollway.observability import configure_logging
from tollway.store.db import Database
from tollway.store.keys import KeyStore


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

    settings = read_settings(config)
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

    secret = with_store(settings, first_key)
    if secret:  # on the terminal, or in a 0600 file when not attached to one (tollway/first_key.py)
        hand_over(secret, Path(settings.server.first_key_file), console)
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    configure_logging()
    raise_file_limit()
    console.print(f"Tollway listening on http://{bind_host}:{bind_port} ({n_workers} worker(s))", highlight=False)
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
        uvicorn.run(create_app(settings), **options)
        return
    # Worker processes build their own app from the same config file.
    if config:
        os.environ[DEFAULT_CONFIG_ENV] = str(Path(config).resolve())
    uvicorn.run("tollway.app:app_from_env", factory=True, workers=n_workers, **options)

