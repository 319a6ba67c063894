"""The local web page (``composer serve``): pick a style, generate, see, hear and download the results.

Starlette (routing, static files, file responses with range requests for the audio player) served by
uvicorn, both from the optional ``web`` extra. The page is plain HTML, CSS and JavaScript in
``composer/static``, with nothing loaded from elsewhere. The work is :class:`composer.jobs.JobQueue`'s;
this module only turns HTTP into its calls and its results and errors into JSON (``{"error": one line}``).
"""

from __future__ import annotations

import errno
import json
import socket
from pathlib import Path
from typing import Any

import click

from composer.api import ComposerError
from composer.commands import option_device

STATIC = Path(__file__).parent / "static"
MAX_BODY = 8_000_000  # bytes of a request: a primer upload in base64, and the settings
NO_WEB = "composer serve needs the web extra: pip install 'lstm-composer[web]' (starlette and uvicorn)"
MEDIA_TYPES = {".mid": "audio/midi", ".musicxml": "application/vnd.recordare.musicxml+xml", ".abc": "text/vnd.abc",
               ".txt": "text/plain; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png", ".wav": "audio/wav"}


def require_web() -> None:
    """A one-line error where the web extra is not installed."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ComposerError(NO_WEB) from None


def bind(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A listening socket, made here rather than by uvicorn so that a taken port or a bad host is one clear
    line before anything starts (port 0: any free port)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ComposerError(f"cannot listen on {host}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port left in TIME_WAIT by a last run is free
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        why = "the port is in use (choose another with --port)" if exc.errno == errno.EADDRINUSE else \
            exc.strerror or str(exc)
        raise ComposerError(f"cannot listen on {host}:{port}: {why}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def run(sock: socket.socket, device: str = "auto") -> None:
    """Serve the page on ``sock`` until interrupted; the jobs' files are deleted on the way out."""
    import uvicorn

    config = uvicorn.Config(create_app(device=device), log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def create_app(device: str = "auto", registry: Any = None) -> Any:
    """The Starlette application: the page, its static files and the JSON API under ``/api``."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from composer.jobs import JobQueue, NoSuchJob

    state: dict[str, JobQueue] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette):
        state["jobs"] = JobQueue(registry, device)
        try:
            yield
        finally:
            state.pop("jobs").close()

    api = Api(state)
    routes = [
        Route("/", api.index),
        Route("/api/styles", api.styles),
        Route("/api/samplers", api.samplers),
        Route("/api/jobs", api.submit, methods=["POST"]),
        Route("/api/jobs/{job}", api.status),
        Route("/api/jobs/{job}/files/{name}", api.file),
        Route("/api/jobs/{job}/inside/{index:int}", api.inside),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {NoSuchJob: api.not_found, ComposerError: api.user_error, HTTPException: api.http_error,
                Exception: api.server_error}
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)


class Api:
    """The endpoints. Slow work (loading a style, writing a file) runs in Starlette's thread pool, so that one
    request's wait never holds up another's status poll."""

    def __init__(self, state: dict) -> None:
        self.state = state

    @property
    def jobs(self) -> Any:
        return self.state["jobs"]

    async def index(self, request: Any) -> Any:
        from starlette.responses import FileResponse

        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def styles(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool

        from composer.jobs import limits, style_list

        return self.reply({"styles": await run_in_threadpool(style_list, self.jobs.registry), "limits": limits()})

    async def samplers(self, request: Any) -> Any:
        from composer.jobs import sampler_list

        return self.reply({"samplers": sampler_list(self.jobs.registry)})

    async def submit(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool

        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_BODY:
            raise ComposerError(f"the request is larger than {MAX_BODY // 1_000_000} MB")
        body = await request.body()
        if len(body) > MAX_BODY:
            raise ComposerError(f"the request is larger than {MAX_BODY // 1_000_000} MB")
        try:
            data = json.loads(body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ComposerError(f"the request is not valid JSON: {getattr(exc, 'msg', exc)}") from None
        job = await run_in_threadpool(self.jobs.submit, data)
        return self.reply(self.jobs.status(job), status=202)

    async def status(self, request: Any) -> Any:
        job = self.jobs.get(request.path_params["job"])
        return self.reply(self.jobs.status(job))

    async def file(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import FileResponse

        job = self.jobs.get(request.path_params["job"])
        path = await run_in_threadpool(self.jobs.file, job, request.path_params["name"])
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"))

    async def inside(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool

        job = self.jobs.get(request.path_params["job"])
        return self.reply(await run_in_threadpool(self.jobs.inspect, job, request.path_params["index"]))

    # -- errors: one line of JSON, and the server goes on
    @staticmethod
    def reply(data: Any, status: int = 200) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse(data, status_code=status, headers={"Cache-Control": "no-store"})

    async def user_error(self, request: Any, exc: ComposerError) -> Any:
        return self.reply({"error": str(exc)}, 400)

    async def not_found(self, request: Any, exc: ComposerError) -> Any:
        return self.reply({"error": str(exc)}, 404)

    async def http_error(self, request: Any, exc: Any) -> Any:
        return self.reply({"error": f"{exc.detail}: {request.url.path}"}, exc.status_code)

    async def server_error(self, request: Any, exc: Exception) -> Any:
        from composer.jobs import one_line

        return self.reply({"error": one_line(exc)}, 500)


LOCAL = ("127.0.0.1", "localhost", "::1")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 opens the page to your network (no password).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port (0: any free one).")
@option_device
def serve_command(host: str, port: int, device: str) -> None:
    """Open a web page to generate with any style, and see, hear and download the results.

    \b
    composer serve                 then open http://127.0.0.1:8000/
    composer serve --port 8080
    """
    require_web()
    sock = bind(host, port)
    if host not in LOCAL:
        click.echo(f"warning: listening on {host}: anyone who can reach this machine can use the page", err=True)
    click.echo(f"composer: the page is at {url_of(sock)} (Ctrl-C to stop)")
    run(sock, device)
