"""Files stay in their place: the real app (tiny model, 1 MB upload limit) serves its own outputs and Gradio's
uploads, and refuses every other file through every route Gradio reads files from: ``..`` in all its encodings,
absolute paths, symlinks placed in outputs/, the job database, half-written files, URLs, and files named as
*inputs* of ``/generate``. Requests go out byte for byte as written (httpx would otherwise normalise ``..``)."""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from gradio import utils as gradio_utils

from i2v.web.file_guard import FileGuardMiddleware

from conftest import REPO, photo_like
from web_support import running_app

LIMIT_MB = 1
SECRET = b"TOPSECRET-" + secrets.token_hex(8).encode("ascii")  # random: never in a page or message by chance
VIDEO = b"\x00\x00\x00\x18ftypmp42 the app's own output"
PARTIAL = b"half-written video"
SQLITE = b"SQLite format 3"
DAY = "2026-11-23"
FILE = "/gradio_api/file="


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> SimpleNamespace:
    """Outputs with one real video, and beside them files the app must never hand out, plus links to them.

    Capitals in the names on purpose: Gradio compares its block list on lower-cased paths, which then no longer
    resolve symlinks (the case that handed out the job database before i2v/web/file_guard.py)."""
    root = tmp_path_factory.mktemp("FileSafety").resolve()
    outputs = root / "Outputs"
    (outputs / DAY).mkdir(parents=True)
    (outputs / DAY / "x.mp4").write_bytes(VIDEO)
    (outputs / DAY / ".x.1a2b3c.partial.mp4").write_bytes(PARTIAL)
    secret = root / "secret.txt"
    secret.write_bytes(SECRET)
    private = root / "Private"
    private.mkdir()
    (private / "notes.txt").write_bytes(SECRET)
    photo = root / "photo.png"
    photo_like(64, 64).save(photo)
    (outputs / "leak.txt").symlink_to(secret)
    (outputs / DAY / "leak.mp4").symlink_to(secret)
    (outputs / "leakdir").symlink_to(private)
    (outputs / DAY / "db.mp4").symlink_to(outputs / "jobs.sqlite3")  # the app creates the database at start
    return SimpleNamespace(root=root, outputs=outputs, secret=secret, photo=photo)


@pytest.fixture(scope="module")
def server(tree):
    with running_app(tree.outputs, extra_args=["--max-upload-mb", str(LIMIT_MB)]) as running:
        # Written once the database is open: SQLite would take it for a hot journal at start and remove it.
        (tree.outputs / "jobs.sqlite3-journal").write_bytes(SQLITE + b" journal " + SECRET)
        (tree.outputs / "jobs.sqlite3.bak").write_bytes(SQLITE + b" copy " + SECRET)
        # Copies of the real database under names that say nothing about it.
        shutil.copyfile(tree.outputs / "jobs.sqlite3", tree.outputs / "backup_jobs.db")
        shutil.copyfile(tree.outputs / "jobs.sqlite3", tree.outputs / DAY / "y.mp4")
        yield running


def send(server, target: str, method: str = "GET", *, auth=None, **kwargs) -> httpx.Response:
    """``target`` as the request line's path, exactly as written."""
    with httpx.Client(timeout=30) as client:
        request = client.build_request(method, server.url, extensions={"target": target.encode("ascii")}, **kwargs)
        return client.send(request, auth=auth)


def assert_refused(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:200])
    for marker in (SECRET, SQLITE, PARTIAL, b"root:x:0:0"):
        assert marker not in response.content, response.content[:200]


# -- what is served ----------------------------------------------------------------------------------------------


def test_a_video_in_outputs_is_served_by_both_file_routes(server, tree):
    video = tree.outputs / DAY / "x.mp4"
    for target in (f"{FILE}{video}", f"/gradio_api/file/{video}"):
        response = send(server, target)
        assert response.status_code == 200, target
        assert response.content == VIDEO
    assert send(server, f"{FILE}{video}", "HEAD").status_code == 200


# -- what is refused ---------------------------------------------------------------------------------------------

# name -> target, built from the tree and the server; every one must get a 4xx without the secret's bytes.
ATTACKS = {
    "dotdot-raw": lambda t, s: f"{FILE}{t.outputs}/../secret.txt",
    "dotdot-encoded": lambda t, s: f"{FILE}{t.outputs}/%2e%2e/secret.txt",
    "dotdot-slash-encoded": lambda t, s: f"{FILE}{t.outputs}%2f%2e%2e%2fsecret.txt",
    "dotdot-double-encoded": lambda t, s: f"{FILE}{t.outputs}/%252e%252e/secret.txt",
    "dotdot-backslash": lambda t, s: f"{FILE}{t.outputs}%5c..%5csecret.txt",
    "dotdot-mixed": lambda t, s: f"{FILE}{t.outputs}/{DAY}/./%2e%2e/.%2e/secret.txt",
    "dotdot-overlong-utf8": lambda t, s: f"{FILE}{t.outputs}/%c0%ae%c0%ae/secret.txt",
    "dotdot-old-route": lambda t, s: f"/gradio_api/file/{t.outputs}/%2e%2e/secret.txt",
    "nul-byte": lambda t, s: f"{FILE}{t.secret}%00.mp4",
    "etc-passwd": lambda t, s: f"{FILE}/etc/passwd",
    "etc-passwd-double-slash": lambda t, s: f"{FILE}//etc/passwd",
    "proc-self-environ": lambda t, s: f"{FILE}/proc/self/environ",
    "secret-absolute": lambda t, s: f"{FILE}{t.secret}",
    "project-app-py": lambda t, s: f"{FILE}{REPO / 'app.py'}",
    "project-app-py-relative": lambda t, s: f"{FILE}app.py",
    "project-source": lambda t, s: f"{FILE}{REPO / 'i2v' / 'settings.py'}",
    "project-venv": lambda t, s: f"{FILE}{REPO / '.venv' / 'pyvenv.cfg'}",
    "home-folder": lambda t, s: f"{FILE}{Path.home()}",
    "symlink-to-secret": lambda t, s: f"{FILE}{t.outputs}/leak.txt",
    "symlink-named-mp4": lambda t, s: f"{FILE}{t.outputs}/{DAY}/leak.mp4",
    "symlinked-dir": lambda t, s: f"{FILE}{t.outputs}/leakdir/notes.txt",
    "symlink-old-route": lambda t, s: f"/gradio_api/file/{t.outputs}/leak.txt",
    "job-db": lambda t, s: f"{FILE}{t.outputs}/jobs.sqlite3",
    "job-db-wal": lambda t, s: f"{FILE}{t.outputs}/jobs.sqlite3-wal",
    "job-db-shm": lambda t, s: f"{FILE}{t.outputs}/jobs.sqlite3-shm",
    "job-db-journal": lambda t, s: f"{FILE}{t.outputs}/jobs.sqlite3-journal",
    "job-db-copy": lambda t, s: f"{FILE}{t.outputs}/jobs.sqlite3.bak",
    "job-db-dotdot": lambda t, s: f"{FILE}{t.outputs}/{DAY}/../jobs.sqlite3",
    "job-db-symlink": lambda t, s: f"{FILE}{t.outputs}/{DAY}/db.mp4",
    "job-db-copy-other-name": lambda t, s: f"{FILE}{t.outputs}/backup_jobs.db",
    "job-db-copy-named-mp4": lambda t, s: f"{FILE}{t.outputs}/{DAY}/y.mp4",
    "partial-video": lambda t, s: f"{FILE}{t.outputs}/{DAY}/.x.1a2b3c.partial.mp4",
    "outputs-folder": lambda t, s: f"{FILE}{t.outputs}",
    "url-loopback": lambda t, s: f"{FILE}{s.url}healthz",
    "url-public": lambda t, s: f"{FILE}https://example.com/",
    "proxy-loopback": lambda t, s: f"/gradio_api/proxy={s.url}healthz",
    "unprefixed-file-route": lambda t, s: f"/file={t.secret}",
    "static-dotdot": lambda t, s: "/static/../../../../../../etc/passwd",
    "assets-dotdot-encoded": lambda t, s: "/assets/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "svelte-dotdot-encoded": lambda t, s: "/svelte/..%2f..%2f..%2f..%2fetc/passwd",
    "custom-component-dotdot": lambda t, s: "/gradio_api/custom_component/x/client/..%2f..%2f/passwd",
}


@pytest.mark.parametrize("name", ATTACKS)
def test_files_outside_the_apps_own_are_refused(server, tree, name):
    assert_refused(send(server, ATTACKS[name](tree, server)))


def test_the_job_database_the_links_point_at_is_real(server, tree):
    """The refusals above mean something: the database exists and the links resolve."""
    assert (tree.outputs / "jobs.sqlite3").read_bytes().startswith(SQLITE)
    assert (tree.outputs / DAY / "db.mp4").read_bytes().startswith(SQLITE)
    assert (tree.outputs / "leakdir" / "notes.txt").read_bytes() == SECRET
    assert SECRET in (tree.outputs / "jobs.sqlite3-journal").read_bytes()


def test_head_and_range_requests_are_refused_alike(server, tree):
    assert_refused(send(server, f"{FILE}{tree.outputs}/leak.txt", "HEAD"))
    assert_refused(send(server, f"{FILE}{tree.outputs}/{DAY}/db.mp4", headers={"Range": "bytes=0-15"}))


# -- files named as inputs ---------------------------------------------------------------------------------------


def call_generate(server, image_path: str) -> str:
    """``/generate`` through Gradio's REST API with ``image_path`` as an already-uploaded file; the event stream."""
    base = server.url.rstrip("/")
    parameters = httpx.get(f"{base}/gradio_api/info", timeout=30).json()["named_endpoints"]["/generate"]["parameters"]
    small = {"preset": "fast-check", "resolution": 128, "frames": 4, "steps": 2}  # quick, were it ever accepted
    data = [small.get(p["parameter_name"], p.get("parameter_default")) for p in parameters]
    data[0] = {"path": image_path, "meta": {"_type": "gradio.FileData"}}
    data[1] = "a red ball rolling slowly to the left"
    event = httpx.post(f"{base}/gradio_api/call/generate", json={"data": data}, timeout=30).json()["event_id"]
    return httpx.get(f"{base}/gradio_api/call/generate/{event}", timeout=120).text


@pytest.mark.parametrize("which", ["photo-outside-outputs", "etc-passwd", "job-db"])
def test_generate_refuses_input_files_that_were_not_uploaded(server, tree, which):
    """Otherwise the server copies the file into Gradio's cache, names the copy in its error, and serves it."""
    path = {"photo-outside-outputs": tree.photo, "etc-passwd": Path("/etc/passwd"),
            "job-db": tree.outputs / "jobs.sqlite3"}[which]
    stream = call_generate(server, str(path))
    assert "event: error" in stream and "event: complete" not in stream, stream[:300]
    assert gradio_utils.get_upload_folder() not in stream  # no cached copy to fetch
    assert "root:x:0:0" not in stream
    assert not (tree.outputs / "inputs").exists()  # no job kept the file as its input


# -- uploads -----------------------------------------------------------------------------------------------------


def upload(server, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{server.url}gradio_api/upload", files={"files": (name, data)}, timeout=60)


def test_an_upload_over_the_limit_is_refused_and_the_server_keeps_answering(server):
    response = upload(server, "big.png", b"\0" * (LIMIT_MB * 2**20 + 1))
    assert response.status_code == 413, response.text[:200]
    assert "maximum allowed size" in response.text
    assert httpx.get(f"{server.url}healthz", timeout=30).json()["ok"] is True


def test_an_upload_within_the_limit_is_stored_in_gradios_folder_and_served_back(server):
    data = b"\x89PNG" + secrets.token_bytes(LIMIT_MB * 2**20 - 4)
    response = upload(server, "ok.png", data)
    assert response.status_code == 200, response.text[:200]
    [path] = response.json()
    assert Path(path).resolve().is_relative_to(Path(gradio_utils.get_upload_folder()).resolve())
    assert send(server, f"{FILE}{path}").content == data  # what the page does with an upload


def test_an_upload_name_cannot_climb_out_of_gradios_folder(server):
    response = upload(server, "../../../../../tmp/evil.txt", b"evil")
    assert response.status_code == 200, response.text[:200]
    [path] = response.json()
    assert Path(path).name == "evil.txt"
    assert Path(path).resolve().is_relative_to(Path(gradio_utils.get_upload_folder()).resolve())


# -- with auth on ------------------------------------------------------------------------------------------------


def test_with_auth_the_file_routes_refuse_anonymous_requests(tmp_path):
    outputs = tmp_path / "outputs"
    (outputs / DAY).mkdir(parents=True)
    video = outputs / DAY / "x.mp4"
    video.write_bytes(VIDEO)
    with running_app(outputs, extra_args=["--auth", "user:pw"]) as running:
        for target in (f"{FILE}{video}", f"/gradio_api/file/{video}"):
            assert send(running, target).status_code == 401
            assert send(running, target, auth=("user", "pw")).content == VIDEO
        anonymous = httpx.post(f"{running.url}gradio_api/upload", files={"files": ("a.png", b"x")}, timeout=30)
        assert anonymous.status_code == 401


# -- the guard on its own ----------------------------------------------------------------------------------------


def test_the_guard_only_looks_at_file_routes_and_strips_a_root_path(tmp_path):
    guard = FileGuardMiddleware(None, outputs=tmp_path)
    inside = str(tmp_path / "a.mp4")
    assert guard.refusal(inside) is None
    assert guard.refusal(str(tmp_path / ".a.mp4")) == "a hidden or half-written file"
    assert guard.refusal("/etc/passwd") == "outside the outputs folder"
    assert guard.refusal("relative.mp4") == "not an absolute path"
    assert guard.refusal(os.fspath(tmp_path) + "x/a.mp4") == "outside the outputs folder"  # a sibling's prefix

    from i2v.web.file_guard import _requested_file
    assert _requested_file({"path": f"/studio{FILE}{inside}", "root_path": "/studio"}) == inside
    assert _requested_file({"path": "/gradio_api/info", "root_path": ""}) is None


# -- how files are served (red-team item 1) ------------------------------------------------------------------------

PAGE = b"<!doctype html><html><body><script>fetch('/gradio_api/info').then(r => r.text())</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>fetch("/metrics")</script></svg>'


@pytest.fixture(scope="module")
def served(server, tree) -> dict[str, str]:
    """Files of every kind in outputs (as older versions kept uploads under the client's suffix) and an HTML
    upload in Gradio's folder: name -> the path to ask for."""
    inputs = tree.outputs / "inputs"
    inputs.mkdir(exist_ok=True)
    files = {"page.html": PAGE, "drawing.svg": SVG, "picture.png": tree.photo.read_bytes(),
             "record.json": b'{"seed": 1}', "notes.txt": b"hello"}
    paths = {}
    for name, data in files.items():
        (inputs / name).write_bytes(data)
        paths[name] = str(inputs / name)
    paths["video.mp4"] = str(tree.outputs / DAY / "x.mp4")
    [paths["upload.html"]] = upload(server, "upload.html", PAGE).json()
    return paths


@pytest.mark.parametrize("name", ["page.html", "drawing.svg", "record.json", "notes.txt", "upload.html"])
def test_files_that_are_not_pictures_or_videos_are_downloads_that_never_run(server, served, name):
    """An HTML or SVG file served inline from the app's origin runs its script with the visitor's credentials."""
    response = send(server, f"{FILE}{served[name]}")
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-disposition"].startswith("attachment"), response.headers
    policy = response.headers["content-security-policy"]
    assert "sandbox" in policy and "default-src 'none'" in policy


@pytest.mark.parametrize("name", ["picture.png", "video.mp4"])
def test_pictures_and_videos_stay_inline_without_sniffing(server, served, name):
    for method in ("GET", "HEAD"):
        response = send(server, f"{FILE}{served[name]}", method)
        assert response.status_code == 200
        assert response.headers["x-content-type-options"] == "nosniff"
        assert not response.headers.get("content-disposition", "inline").startswith("attachment")
        assert "sandbox" in response.headers["content-security-policy"]
    ranged = send(server, f"{FILE}{served['video.mp4']}", headers={"Range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.headers["x-content-type-options"] == "nosniff"


def test_healthz_answers_head_like_get(server):
    """Load balancers and uptime checks probe with HEAD."""
    response = send(server, "/healthz", "HEAD")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
