"""``latentspace keys`` and ``latentspace serve``: API keys and the HTTP server."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..core.errors import InvalidInputError

keys_app = typer.Typer(help="API keys of `latentspace serve`: create (shown once), list, revoke.", no_args_is_help=True)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _keys(store: str, keys_file: Optional[Path]):
    from ..server.app import Settings
    from ..server.keys import KeyStore

    path = Settings(store=store, keys=str(keys_file) if keys_file else None).keys_path()
    if path is None:
        raise InvalidInputError(f"{store} is not a folder: give the keys file with --keys FILE.")
    return KeyStore(path)


@keys_app.command("create")
def keys_create(
    store: str = typer.Argument(..., help="The store the server serves (its folder holds keys.json)."),
    scope: str = typer.Option(..., help="read, write (includes read) or admin (includes write)."),
    collection: Optional[list[str]] = typer.Option(None, help="Limit the key to this collection (repeatable)."),
    name: str = typer.Option("", help="A note to tell keys apart."),
    keys_file: Optional[Path] = typer.Option(None, "--keys", help="The keys file (default: STORE/keys.json)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create a key; it is printed this once (only its hash is kept)."""
    from .common import console, emit_json

    key, entry = _keys(store, keys_file).create(scope, collections=collection or None, name=name)
    if as_json:
        emit_json({"key": key, **entry.public()})
    else:
        console.print(f"{key}\n[dim]id {entry.id}, scope {entry.scope}"
                      f"{', collections ' + ', '.join(entry.collections) if entry.collections else ''}: shown once, "
                      "store it now.[/]", highlight=False)


@keys_app.command("list")
def keys_list(
    store: str = typer.Argument(...),
    keys_file: Optional[Path] = typer.Option(None, "--keys"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The keys (ids, scopes, collections, when made, when revoked; never the keys)."""
    from .common import console, emit_json

    rows = [k.public() for k in _keys(store, keys_file).list()]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        state = "revoked" if r["revoked_at"] else "active"
        console.print(f"{r['id']}  {r['scope']:<5}  {state:<7}  {', '.join(r['collections'] or ['(all)'])}  {r['name']}")
    if not rows:
        console.print("No keys.")


@keys_app.command("revoke")
def keys_revoke(
    store: str = typer.Argument(...),
    key_id: str = typer.Argument(..., help="The key's id (keys list)."),
    keys_file: Optional[Path] = typer.Option(None, "--keys"),
) -> None:
    """Revoke a key: servers refuse it from their next request."""
    from .common import console

    _keys(store, keys_file).revoke(key_id)
    console.print(f"Revoked {key_id}.")


def default_workers() -> int:
    """One worker per core the process may use, at most 4: bench/server.py measured 1.6-1.8x
    the requests/s of one worker with two on two cores at 8 and 32 clients (bench/RESULTS.md);
    past a few workers the copies of the index and models cost more memory than cores give."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 4))


def serve_cmd(
    store: str = typer.Argument(..., help="The store to serve: a folder or a URI."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000),
    workers: Optional[int] = typer.Option(None, help="Worker processes. Default: one per CPU core, at most 4 "
                                          "(a worker serves on one core; each holds its own copy of the index and "
                                          "of any model it loads). The embedded store takes any number of reader "
                                          "processes and one writer at a time."),
    keys_file: Optional[Path] = typer.Option(None, "--keys", help="The keys file (default: STORE/keys.json)."),
    latent: Optional[list[str]] = typer.Option(None, "--latent", help="A saved latent model for the explorer: "
                                               "DIR, or DIR:DATA.npz (arrays x, optional y) to map the data's "
                                               "latents. Repeatable."),
) -> None:
    """Serve a store over HTTP: the web explorer at /, REST under /v1, OpenAPI at /docs.
    Refuses a non-loopback address without API keys."""
    from ..server.app import Settings, _require_fastapi
    from ..server.keys import KeyStore

    _require_fastapi()
    models = {}
    for source in latent or []:
        folder, _, data = source.partition(":")
        if not Path(folder, "config.json").is_file():
            raise InvalidInputError(f"--latent {source}: {folder} is not a saved latent model (no config.json).")
        if data and not Path(data).is_file():
            raise InvalidInputError(f"--latent {source}: no file {data}.")
        models[Path(folder).name] = source
    settings = Settings(store=store, keys=str(keys_file) if keys_file else None, latent=models)
    path = settings.keys_path()
    has_keys = path is not None and KeyStore(path).active()
    if host not in LOOPBACK and not has_keys:
        raise InvalidInputError(f"Refusing to serve on {host} without API keys: anyone who can reach it could read "
                                f"and change the store. Create one with `latentspace keys create {store} --scope "
                                "admin`, or serve on 127.0.0.1.")
    import os

    import uvicorn

    os.environ["LATENTSPACE_SERVE_STORE"] = store
    if keys_file:
        os.environ["LATENTSPACE_SERVE_KEYS"] = str(keys_file)
    if models:
        import json

        os.environ["LATENTSPACE_SERVE_LATENT"] = json.dumps(models)
    if workers is None:
        workers = default_workers()
    if workers < 1:
        raise InvalidInputError(f"--workers must be at least 1; got {workers}.")
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"Serving {store} at http://{shown}:{port}/ (the explorer; REST under /v1, OpenAPI at /docs) with "
               f"{workers} worker{'s' if workers > 1 else ''}{', API keys required' if has_keys else ''}. Ctrl-C stops.",
               err=True)
    uvicorn.run("latentspace.server.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="warning")
