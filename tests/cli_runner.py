"""Run the CLI as a user would, in this process (fast) or as a real subprocess (a handful).

In-process runs call ``latentspace.cli.app.main`` with the arguments, capture what it
writes to stdout and stderr, and turn its ``SystemExit`` into a return code, exactly as
the installed script would. Models are the expensive part of a CLI call, so encoders
built while a command runs are shared by the whole test session, keyed by their config:
every command still builds its encoder through the same code path, only once.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass

_ENCODERS: dict[str, object] = {}


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def _shared(build):
    def memo(*args, **kwargs):
        key = json.dumps([build.__name__, args, kwargs], sort_keys=True, default=str)
        if key not in _ENCODERS:
            _ENCODERS[key] = build(*args, **kwargs)
        return _ENCODERS[key]

    return memo


def run(*args, check: bool = True, env: dict | None = None, columns: int = 200) -> Result:
    """``latentspace ARGS...`` in this process; raises with the output when it fails and ``check``."""
    import latentspace.embed as embed
    from latentspace.cli import common
    from latentspace.cli.app import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    saved_env = {k: os.environ.get(k) for k in (env or {})}
    saved = (embed.encoder_from_config, embed.default_encoder)
    widths = (common.console.width, common.err_console.width)
    code = 0
    try:
        os.environ.update(env or {})
        embed.encoder_from_config = _shared(saved[0])
        embed.default_encoder = _shared(saved[1])
        common.console.width = common.err_console.width = columns
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        embed.encoder_from_config, embed.default_encoder = saved
        common.console.width, common.err_console.width = widths
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    result = Result(argv, code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"exit {code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def run_process(*args, check: bool = True, env: dict | None = None, timeout: float = 600) -> Result:
    """``latentspace ARGS...`` as a real subprocess: for what only a process shows (imports,
    signals, the installed entry point)."""
    proc = subprocess.run(
        [sys.executable, "-m", "latentspace.cli.app", *map(str, args)],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200", **(env or {})}, timeout=timeout,
    )
    result = Result([str(a) for a in args], proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return result
