"""``lasro label``: a local web app in which a person picks the better of two images of the same prompt.

FastAPI on uvicorn, bound to 127.0.0.1 unless told otherwise. What it guards against, since it is a server:
- images come only from the label folder's ``images/`` and only by a safe file name, never by a path;
- every request must name this machine in its ``Host`` header (127.0.0.1 or localhost unless the app is
  bound to another address), so a web page whose own name an attacker re-points at 127.0.0.1 (DNS
  rebinding) is refused;
- every POST must come from the page itself: an ``Origin`` (or, failing that, ``Referer``) whose host and
  port are the server's, and a JSON body (a cross-site form cannot send one without a CORS preflight,
  which this app never grants);
- input is validated (pydantic); nothing is unpickled; a vote is on disk before the page hears "ok".
"""
from __future__ import annotations

import os
import threading
import time
from typing import Literal
from urllib.parse import urlsplit

import jinja2
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.middleware.trustedhost import TrustedHostMiddleware

from lasro.labeling.votes import SAFE_NAME, VoteError, VoteStore

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
HOST = "127.0.0.1"
PORT = 8765


class VoteIn(BaseModel):
    pair_id: str
    choice: Literal["left", "right", "tie", "skip"]


def same_origin(request: Request) -> bool:
    """Whether a request's Origin (else Referer) names this server's own host and port."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    parts = urlsplit(source)
    host = request.headers.get("host", "")
    return parts.scheme in ("http", "https") and parts.netloc == host


LOOPBACK_NAMES = ["127.0.0.1", "localhost"]


def allowed_hosts(host: str) -> list[str]:
    """The Host header values the app answers: loopback names, and the bound address if it is another one
    (bound to every interface, any name: the caller warns that anyone who reaches the port can vote)."""
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    return LOOPBACK_NAMES + ([host] if host not in LOOPBACK_NAMES else [])


def create_app(folder: str, title: str = "lasro label", host: str = HOST) -> FastAPI:
    """The app over one label folder (``VoteStore``), bound to ``host``."""
    store = VoteStore(folder)
    page = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                              autoescape=True).get_template("label.html.j2").render(title=title)
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store

    @app.middleware("http")
    async def guard_posts(request: Request, call_next):
        if request.method not in ("GET", "HEAD"):
            if not same_origin(request):
                return JSONResponse({"error": "cross-origin request refused: POST from the label page itself"},
                                    status_code=403)
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return JSONResponse({"error": "send JSON (Content-Type: application/json)"}, status_code=415)
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host))  # outermost: runs first

    def state(pair=None) -> dict:
        voted, total = store.progress()
        out = {"voted": voted, "total": total, "pair": None}
        if pair is not None:
            out["pair"] = {"pair_id": pair.pair_id, "prompt": pair.prompt, "batch": pair.batch,
                           "image_0": f"images/{pair.image_0}", "image_1": f"images/{pair.image_1}"}
        return out

    @app.get("/", response_class=HTMLResponse)
    def index():
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/api/next")
    def next_pair():
        return state(store.next_pending())

    @app.post("/api/vote")
    def vote(body: VoteIn):
        try:
            store.vote(body.pair_id, body.choice)
        except VoteError as e:
            raise HTTPException(status_code=404, detail=str(e)) from None
        return state(store.next_pending())

    @app.post("/api/undo")
    def undo():
        pair_id = store.undo()
        return {**state(store.next_pending()), "undone": pair_id}

    @app.get("/images/{name}")
    def image(name: str):
        if not SAFE_NAME.match(name) or not name.lower().endswith((".png", ".jpg", ".jpeg", ".webp")):
            raise HTTPException(status_code=404, detail="no such image")
        path = os.path.realpath(os.path.join(store.images, name))
        if os.path.dirname(path) != os.path.realpath(store.images) or not os.path.isfile(path):
            raise HTTPException(status_code=404, detail="no such image")
        return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/health")
    def health():
        return {"ok": True, "voted": store.progress()[0]}

    return app


class LabelServer:
    """The app served from a background thread (the trainer's ``reward: human`` waits for votes while it
    runs). ``with LabelServer(folder) as s: s.url``."""

    def __init__(self, folder: str, host: str = HOST, port: int = PORT, log_level: str = "warning"):
        self.app = create_app(folder, host=host)
        self.config = uvicorn.Config(self.app, host=host, port=port, log_level=log_level, access_log=False)
        self.server = uvicorn.Server(self.config)
        self.thread: threading.Thread | None = None
        self.host = host

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1] if self.server.servers else self.config.port
        return f"http://{self.host}:{port}/"

    def start(self, timeout: float = 30.0) -> LabelServer:
        self.thread = threading.Thread(target=self.server.run, name="lasro-label", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the label app did not start on {self.host}:{self.config.port} (port in use? "
                                   "set another with --port or the reward's port)")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.app.state.store.close()

    def __enter__(self) -> LabelServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
