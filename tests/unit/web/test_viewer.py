"""The OHIF viewer's routes, install and gate without Orthanc: the static handler (traversal refused, content
types, caching, CSP), the rewritten index page, the install's patches and checks, the DICOMweb gate and its
audit rows. The real viewer in Chromium: tests/e2e/test_viewer.py."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from nmdose.audit import dicomweb as audit_dicomweb
from nmdose.auth import User
from nmdose.web import routes_viewer, viewer_dist
from nmdose.web.gate import OrthancGate
from nmdose.web.router import HttpError, Request, Router
from nmdose.web.routes import Context, register

# What OHIF's built index.html looks like (shortened): inline scripts, root-relative links, the service worker.
OHIF_INDEX = (
    '<!doctype html><html lang="en"><head><meta charset="UTF-8">'
    '<script>console.time("scriptToView"),window.PUBLIC_URL="/"</script>'
    '<link rel="manifest" href="/manifest.json"><link rel="icon shortcut" href="/assets/favicon.ico">'
    '<meta name="msapplication-TileImage" content="/assets/mstile-144x144.png">'
    '<script rel="preload" as="script" src="/app-config.js"></script>'
    '<script rel="preload" as="script" type="module" src="/init-service-worker.js"></script>'
    "<title>OHIF Viewer</title>"
    '<script>function browserImportFunction(n){return import(n)}window.PUBLIC_URL="/"</script>'
    '<script defer src="/app.bundle.0f6159c501addfe9.js"></script><link href="/app.bundle.css" rel="stylesheet">'
    '</head><body><div id="root"></div></body></html>'
)
BUNDLE = "app.bundle.0f6159c501addfe9.js"


@pytest.fixture
def viewer_root(tmp_path):
    """A fake install: <root>/<version>/dist with a few files, and a secret next to the root."""
    dist = viewer_dist.dist_dir(tmp_path / "ohif")
    (dist / "assets").mkdir(parents=True)
    (dist / "ort" / "esm").mkdir(parents=True)
    (dist / "index.html").write_text(OHIF_INDEX)
    (dist / BUNDLE).write_text('__webpack_require__.p = "/";')
    (dist / "0ddf166f7a343eda.wasm").write_bytes(b"\0asm\1\0\0\0")
    (dist / "app.bundle.css").write_text("a{}")
    (dist / "assets" / "favicon.ico").write_bytes(b"ico")
    (dist / "ort" / "esm" / "ort.min.mjs").write_text("export {}")
    (dist / "serve.json").write_text("{}")
    (dist / "notes.py").write_text("not served")
    (tmp_path / "secret.txt").write_text("outside the dist")
    (dist / "link.js").symlink_to(tmp_path / "secret.txt")
    return tmp_path / "ohif"


def make_router(root: Path, oidc=None) -> Router:
    router = Router()
    register(
        router, routes_viewer.ROUTES, Context(SimpleNamespace(viewer_root=str(root)), db=None, oidc=oidc)
    )
    return router


def get(router: Router, path: str):
    return router.dispatch(Request("GET", path))


@pytest.mark.parametrize(
    ("path", "ctype", "cache"),
    [
        (f"/viewer/{BUNDLE}", "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"),
        ("/viewer/0ddf166f7a343eda.wasm", "application/wasm", "public, max-age=31536000, immutable"),
        ("/viewer/app.bundle.css", "text/css; charset=utf-8", "public, max-age=3600"),
        ("/viewer/serve.json", "application/json", "public, max-age=3600"),
        ("/viewer/assets/favicon.ico", "image/x-icon", "public, max-age=3600"),
        ("/viewer/ort/esm/ort.min.mjs", "text/javascript; charset=utf-8", "public, max-age=3600"),
        ("/viewer/nmdose-viewer.js", "text/javascript; charset=utf-8", "no-cache"),
        ("/viewer/app-config.js", "text/javascript; charset=utf-8", "no-cache"),
    ],
)
def test_files_are_served_with_their_type_caching_and_the_viewer_csp(viewer_root, path, ctype, cache):
    resp = get(make_router(viewer_root), path)
    assert resp.status == 200 and resp.body
    assert resp.content_type == ctype
    assert resp.headers["Cache-Control"] == cache
    csp = resp.headers["Content-Security-Policy"]
    assert (
        "'wasm-unsafe-eval'" in csp and "worker-src 'self' blob:" in csp and "frame-ancestors 'none'" in csp
    )
    assert "'unsafe-eval'" not in csp and "script-src 'self' 'wasm-unsafe-eval';" in csp  # no inline script


@pytest.mark.parametrize(
    "path",
    [
        "/viewer/../secret.txt",
        "/viewer/assets/..",
        "/viewer/../../secret.txt",
        "/viewer/link.js",  # a link out of the dist folder
        "/viewer/notes.py",  # a type that is not served
        "/viewer/.hidden.js",
        "/viewer/assets/missing.png",
        "/viewer/assets/..%2F..%2Fsecret.txt",
        "/viewer/a/b/c/d.js",
        "/viewer/index.html.bak",
    ],
)
def test_nothing_outside_the_dist_folder_nor_of_an_unknown_type(viewer_root, path):
    resp = get(make_router(viewer_root), path)
    assert resp.status == 404, (path, resp.status, resp.body)
    assert b"outside the dist" not in resp.body


def test_serve_file_refuses_traversal_segments_directly(viewer_root):
    ctx = Context(SimpleNamespace(viewer_root=str(viewer_root)), db=None)
    for parts in (["..", "secret.txt"], ["assets", "..", "..", "..", "secret.txt"], ["/etc", "passwd"]):
        with pytest.raises(HttpError) as err:
            routes_viewer.serve_file(parts, ctx)
        assert err.value.status == 404


def test_the_index_page_has_no_inline_script_and_relative_links(viewer_root):
    resp = get(make_router(viewer_root), "/viewer/viewer")
    page = resp.body.decode()
    assert resp.status == 200 and resp.content_type.startswith("text/html")
    assert resp.headers["Cache-Control"] == "no-store"
    assert "<script>" not in page and "window.PUBLIC_URL" not in page
    assert "init-service-worker" not in page and "manifest.json" not in page
    assert '="/' not in page  # every link relative to /nmdose/viewer/
    assert 'href="assets/favicon.ico"' in page and 'href="app.bundle.css"' in page
    boot = page.index('<script src="nmdose-viewer.js"')
    assert boot < page.index("<meta charset")  # first in <head>
    scripts = page[boot:].split('data-scripts="', 1)[1].split('"', 1)[0].replace("&quot;", '"')
    assert json.loads(scripts) == ["app-config.js", BUNDLE]  # loaded in this order by the boot script
    assert "nmdose-oidc" not in page and "<base" not in page  # dev mode: no login


def test_the_viewer_root_names_its_folder_and_other_route_names_get_the_index(viewer_root):
    router = make_router(viewer_root)
    root = get(router, "/viewer").body.decode()
    assert '<base href="/nmdose/viewer/">' in root
    for route in ("/viewer/viewer", "/viewer/tmtv", "/viewer/segmentation"):
        assert get(router, route).body.decode().startswith("<!doctype html>")


def test_keycloak_mode_index_logs_in_first_and_the_csp_names_the_issuer(viewer_root):
    oidc = {"issuer": "https://kc.example:8443/realms/nmdose", "client_id": "nmdose-web", "scope": "openid"}
    resp = get(make_router(viewer_root, oidc), "/viewer/viewer")
    page = resp.body.decode()
    meta, auth, boot = (
        page.index(s) for s in ('name="nmdose-oidc"', "../static/nmdose-auth.js", "nmdose-viewer.js")
    )
    assert meta < auth < boot
    assert "connect-src 'self' data: blob: https://kc.example:8443" in resp.headers["Content-Security-Policy"]


def test_without_the_install_the_viewer_answers_503_saying_what_to_run(tmp_path):
    router = make_router(tmp_path / "nothing")
    for path in ("/viewer/viewer", f"/viewer/{BUNDLE}", "/viewer"):
        resp = get(router, path)
        assert resp.status == 503 and b"make deps" in resp.body, path
    assert get(router, "/viewer/app-config.js").status == 200  # ours, always there


def test_the_app_config_points_dicomweb_two_folders_up_from_itself():
    text = routes_viewer.OWN_FILES["app-config.js"].read_text()
    assert 'new URL("../../dicom-web", here)' in text and "routerBasename: here.pathname" in text
    assert "d14fa38qiwhyfd" not in text  # not OHIF's public demo server


# ----- the install


def test_public_path_and_css_patches():
    text, n = viewer_dist.patch_public_path('a;__webpack_require__.p = "/";b')
    assert n == 1 and "window.PUBLIC_URL" in text and 'p = "/"' not in text
    assert viewer_dist.patch_public_path('__webpack_require__.p = "/x/";') == (
        '__webpack_require__.p = "/x/";',
        0,
    )
    css, n = viewer_dist.patch_css(
        "@font-face{src:url(/a34f.woff2)} b{background:url(//cdn/x.png)} c{url('/y.png')}"
    )
    assert n == 2 and "url(a34f.woff2)" in css and "url(//cdn/x.png)" in css and "url('y.png')" in css


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_unpack_takes_dist_only_refuses_escaping_paths_and_patches_bundles(tmp_path):
    good = _tarball(
        tmp_path / "good.tgz",
        {
            "package/dist/index.html": b"<html><head></head></html>",
            "package/dist/app.bundle.0123456789abcdef.js": b'__webpack_require__.p = "/";',
            "package/dist/app.bundle.css": b"x{src:url(/f.woff2)}",
            "package/LICENSE": b"MIT",
            "package/src/other.js": b"not taken",
        },
    )
    assert viewer_dist.unpack(good, tmp_path / "out") == 1
    assert "PUBLIC_URL" in (tmp_path / "out/dist/app.bundle.0123456789abcdef.js").read_text()
    assert (tmp_path / "out/dist/app.bundle.css").read_text() == "x{src:url(f.woff2)}"
    assert (tmp_path / "out/LICENSE").exists() and not (tmp_path / "out/src").exists()
    bad = _tarball(
        tmp_path / "bad.tgz", {"package/dist/index.html": b"x", "package/dist/../../evil.js": b"x"}
    )
    with pytest.raises(ValueError, match="unsafe path"):
        viewer_dist.unpack(bad, tmp_path / "out2")
    assert not (tmp_path / "evil.js").exists()
    empty = _tarball(tmp_path / "empty.tgz", {"package/dist/app.js": b"x"})
    with pytest.raises(ValueError, match="no dist/index.html"):
        viewer_dist.unpack(empty, tmp_path / "out3")


def test_install_refuses_a_tarball_of_another_integrity_and_leaves_nothing(tmp_path):
    fake = _tarball(tmp_path / "fake.tgz", {"package/dist/index.html": b"<html></html>"})
    with pytest.raises(ValueError, match="integrity"):
        viewer_dist.install(tmp_path / "root", tarball=fake)
    assert not viewer_dist.installed(tmp_path / "root")
    assert list((tmp_path / "root").iterdir()) == []  # no half-installed tree


def test_installed_needs_the_marker_of_this_version_and_patch_level(viewer_root):
    assert not viewer_dist.installed(viewer_root)  # the fixture wrote no marker
    marker = viewer_root / viewer_dist.OHIF_VERSION / viewer_dist.MARKER
    marker.write_text(
        json.dumps({"version": viewer_dist.OHIF_VERSION, "patch_level": viewer_dist.PATCH_LEVEL})
    )
    assert viewer_dist.installed(viewer_root)
    marker.write_text(json.dumps({"version": viewer_dist.OHIF_VERSION, "patch_level": 0}))
    assert not viewer_dist.installed(viewer_root)  # older patches: installed again


# ----- the gate and the audit rows


class FakeAuth:
    def __init__(self, users):
        self.users = users

    def user_from_headers(self, headers, *, allow_cookie=True):
        token = (headers.get("authorization") or "").removeprefix("Bearer ")
        if token == "bad":
            raise HttpError(401, "invalid token")
        return self.users.get(token)


def keycloak_gate(observers=()) -> OrthancGate:
    gate = OrthancGate.__new__(OrthancGate)  # keycloak mode without a secret store
    gate.enabled, gate._secret, gate._header = True, b"internal", "x-nmdose-internal"
    viewer = User("phys", ("physicist",), frozenset({"dose:read", "images:read"}))
    tech = User("tech", ("technologist",), frozenset({"dose:read"}))
    admin = User("admin", ("admin",), frozenset({"orthanc:admin"}))
    gate.auth = FakeAuth({"phys": viewer, "tech": tech, "admin": admin})
    gate.observers = list(observers)
    gate.study_access = None  # no research project (tests/unit/test_project_viewer.py)
    return gate


@pytest.mark.parametrize(
    ("method", "uri", "token", "allowed"),
    [
        ("GET", "/dicom-web/studies", "phys", True),
        ("GET", "/dicom-web/studies/1.2.3/series/4.5/instances/6.7/frames/1", "phys", True),
        ("GET", "/wado", "phys", True),
        ("POST", "/dicom-web/studies", "phys", False),  # STOW-RS
        ("DELETE", "/dicom-web/studies/1.2.3", "phys", False),
        ("GET", "/dicom-web-other/x", "phys", False),
        ("GET", "/patients", "phys", False),  # Orthanc's own API
        ("GET", "/instances/abc/file", "phys", False),
        ("GET", "/dicom-web/studies", "tech", False),  # no images:read
        ("GET", "/dicom-web/studies", "", False),
        ("GET", "/dicom-web/studies", "bad", False),
        ("POST", "/dicom-web/studies", "admin", True),
        ("GET", "/nmdose/viewer/viewer", "", True),  # the router decides
    ],
)
def test_gate_admits_dicomweb_reads_with_images_read_only(method, uri, token, allowed):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    assert keycloak_gate().allowed(method, uri, "127.0.0.1", headers) is allowed


class FakeWriter:
    def __init__(self):
        self.rows = []

    def submit(self, item):
        self.rows.append(item)


def test_dicomweb_reads_are_audited_once_per_user_study_and_kind_per_window():
    writer = FakeWriter()
    gate = keycloak_gate([audit_dicomweb.make_gate_observer(writer, window_s=60)])
    phys = {"authorization": "Bearer phys", "user-agent": "test"}
    study = "/dicom-web/studies/1.2.3"
    for uri in (
        "/dicom-web/studies",
        f"{study}/series",
        f"{study}/series/4.5/metadata",
        *(f"{study}/series/4.5/instances/6.{i}/frames/1" for i in range(50)),
        "/dicom-web/studies/9.8/series",
    ):
        assert gate.allowed("GET", uri, "10.0.0.9", phys)
    assert not gate.allowed("GET", f"{study}/series", "10.0.0.9", {"authorization": "Bearer tech"})
    got = [(r.actor_username, r.study_uids, r.detail["kind"], r.action) for r in writer.rows]
    assert got == [
        ("phys", [], "search", "/dicom-web/studies"),
        ("phys", ["1.2.3"], "metadata", "/dicom-web/studies/{uid}/series"),
        ("phys", ["1.2.3"], "images", "/dicom-web/studies/{uid}/series/{uid}/instances/{uid}/frames/{uid}"),
        ("phys", ["9.8"], "metadata", "/dicom-web/studies/{uid}/series"),
    ]
    admin = {"authorization": "Bearer admin"}
    assert gate.allowed("POST", "/dicom-web/studies", "10.0.0.9", admin)  # STOW-RS by an admin: a write row
    assert (writer.rows[-1].detail["kind"], writer.rows[-1].permission) == ("write", "orthanc:admin")
    row = writer.rows[1]
    assert row.client_address == "10.0.0.9" and row.permission == "images:read" and row.source == "web"
    assert row.detail["user_agent"] == "test" and row.detail["deduplicated_s"] == 60


def test_deduper_lets_a_key_through_again_after_its_window():
    seen = audit_dicomweb.Deduper(60, max_keys=2)
    assert seen.first(("u", "s", "images"), now=0) and not seen.first(("u", "s", "images"), now=59)
    assert seen.first(("u", "s", "images"), now=61)
    assert seen.first(("u", "t", "images"), now=62) and seen.first(
        ("v", "t", "images"), now=200
    )  # pruned, kept
