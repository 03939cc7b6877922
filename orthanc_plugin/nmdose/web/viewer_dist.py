"""The OHIF viewer's files: installed from the npm registry at `make deps` time, never committed.

`@ohif/app` (MIT licence) ships its production build in the package's `dist/` (about 204 MB unpacked, 50 MB
packed). That build was made for the site root: `window.PUBLIC_URL = "/"` in inline scripts of `index.html`,
absolute `/...` links there, and webpack's public path `__webpack_require__.p = "/"` in the main bundle and in
each worker bundle (chunks, workers and WebAssembly codecs are fetched from it). nmdose serves it under
`/nmdose/viewer/` (web/routes_viewer.py), so :func:`install` patches the public path of the bundles, at install
time, to the one the page sets at run time (`window.PUBLIC_URL`, derived from the address of
`nmdose-viewer.js`; in a worker: the folder of the worker's own script), and the index page is rewritten when it
is served (:func:`viewer_index`): no inline script (the CSP), relative links, our boot script first.

`python -m nmdose.web.viewer_dist [install|check]` (scripts/install-deps.sh): idempotent, the tarball checked
against the pinned integrity before anything is unpacked; the installed tree gets a marker naming the version.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from functools import cache
from pathlib import Path

OHIF_PACKAGE = "@ohif/app"
OHIF_VERSION = "3.13.2"
# `npm view @ohif/app@3.13.2 dist.integrity`: the tarball is refused when it differs.
OHIF_INTEGRITY = (
    "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
)
OHIF_LICENSE = "MIT"

REPO_ROOT = Path(__file__).resolve().parents[3]
# Git-ignored (/var/); the production image installs it at build time in /opt/nmdose/var/ohif.
DEFAULT_ROOT = REPO_ROOT / "var" / "ohif"
MARKER = ".nmdose-ohif.json"

# webpack's runtime in the main bundle and in each worker bundle: the public path baked in at build time.
PUBLIC_PATH_RE = re.compile(r'__webpack_require__\.p = "/";')
# Style sheets name their fonts from the site root (`url(/a34f9d1faa5f3315.woff2)`): made relative to the sheet.
CSS_ROOT_URL_RE = re.compile(r"url\(\s*(['\"]?)/(?!/)")
# Bumped when the patches change: an older install is replaced.
PATCH_LEVEL = 2
PUBLIC_PATH_RUNTIME = (
    "__webpack_require__.p = (typeof window !== 'undefined' && window.PUBLIC_URL) || "
    "self.location.pathname.replace(/[^/]*$/, '');"
)


class ViewerMissing(Exception):
    """The OHIF files are not installed (run `make deps`)."""


def dist_dir(root: Path = DEFAULT_ROOT) -> Path:
    """The installed `dist/` of the pinned version."""
    return root / OHIF_VERSION / "dist"


def installed(root: Path = DEFAULT_ROOT) -> bool:
    try:
        marker = json.loads((root / OHIF_VERSION / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return (
        marker.get("version") == OHIF_VERSION
        and marker.get("patch_level") == PATCH_LEVEL
        and (dist_dir(root) / "index.html").is_file()
    )


def integrity_of(path: Path) -> str:
    """The npm `integrity` (Subresource Integrity, sha512) of a file."""
    digest = hashlib.sha512()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def patch_public_path(text: str) -> tuple[str, int]:
    """A bundle's webpack public path made a run-time value; (new text, number of replacements)."""
    return PUBLIC_PATH_RE.subn(lambda _m: PUBLIC_PATH_RUNTIME, text)


def patch_css(text: str) -> tuple[str, int]:
    """A style sheet's root-relative `url(/x)` made relative to the sheet (it lies in the dist root)."""
    return CSS_ROOT_URL_RE.subn(lambda m: f"url({m.group(1)}", text)


def unpack(tarball: Path, target: Path) -> int:
    """`package/dist/*` of the tarball into `target/dist`, nothing outside it (no links, no `..`), the public
    path of its bundles patched; the number of bundles patched."""
    dist = target / "dist"
    with tarfile.open(tarball, "r:gz") as tar:
        members = []
        for m in tar.getmembers():
            name = m.name
            if not name.startswith("package/"):
                continue
            rel = Path(name[len("package/") :])
            if ".." in rel.parts or rel.is_absolute():
                raise ValueError(f"unsafe path in {tarball.name}: {name}")
            if m.isfile() and (
                rel.parts[:1] == ("dist",) or name in ("package/LICENSE", "package/package.json")
            ):
                members.append((m, rel))
        if not any(rel == Path("dist/index.html") for _m, rel in members):
            raise ValueError(f"{tarball.name} has no dist/index.html")
        for m, rel in members:
            out = target / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            with src, out.open("wb") as f:
                shutil.copyfileobj(src, f)
    patched = 0
    for js in dist.glob("*.js"):
        text = js.read_text(encoding="utf-8", errors="surrogateescape")
        new, n = patch_public_path(text)
        if n:
            js.write_text(new, encoding="utf-8", errors="surrogateescape")
            patched += 1
    for css in dist.glob("*.css"):
        text = css.read_text(encoding="utf-8", errors="surrogateescape")
        new, n = patch_css(text)
        if n:
            css.write_text(new, encoding="utf-8", errors="surrogateescape")
    return patched


def install(root: Path = DEFAULT_ROOT, *, npm: str = "npm", tarball: Path | None = None) -> Path:
    """Install the pinned OHIF build under `root` (nothing when it is there); its `dist/`. `tarball`: a
    downloaded `npm pack` of it (else npm fetches it). Raises ValueError on an integrity mismatch."""
    if installed(root):
        return dist_dir(root)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        tmpdir = Path(tmp)
        if tarball is None:
            subprocess.run(
                [
                    npm,
                    "pack",
                    f"{OHIF_PACKAGE}@{OHIF_VERSION}",
                    "--pack-destination",
                    str(tmpdir),
                    "--silent",
                ],
                check=True,
                cwd=tmpdir,
                stdout=subprocess.DEVNULL,
            )
            found = list(tmpdir.glob("*.tgz"))
            if len(found) != 1:
                raise ValueError(f"npm pack left {len(found)} tarballs")
            tarball = found[0]
        got = integrity_of(tarball)
        if got != OHIF_INTEGRITY:
            raise ValueError(f"{tarball.name}: integrity {got} is not the pinned {OHIF_INTEGRITY}")
        staging = tmpdir / "staging"
        patched = unpack(tarball, staging)
        if patched == 0:
            raise ValueError('no bundle had webpack\'s public path "/": not the build this code knows')
        size = sum(p.stat().st_size for p in (staging / "dist").rglob("*") if p.is_file())
        marker = {"package": OHIF_PACKAGE, "version": OHIF_VERSION, "integrity": OHIF_INTEGRITY}
        marker["patch_level"] = PATCH_LEVEL
        marker.update({"license": OHIF_LICENSE, "bytes": size, "patched_bundles": patched})
        (staging / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        final = root / OHIF_VERSION
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)  # the marker arrives with the tree: a half-installed tree has none
    return dist_dir(root)


# ----- the index page, rewritten for the sub-path and the CSP ---------------------------------------------

_INLINE_SCRIPT_RE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>.*?</script>", re.S)
_SCRIPT_SRC_RE = re.compile(r"<script\b[^>]*\bsrc=\"/?([^\"]*)\"[^>]*>\s*</script>", re.S)
_ABSOLUTE_ATTR_RE = re.compile(r'(\s(?:href|src|content)=")/(?!/)')


def rewrite_index(text: str, *, boot_head: str) -> str:
    """OHIF's `index.html` for a sub-path: its inline scripts dropped (our CSP allows none; what they set,
    nmdose-viewer.js sets), the service worker's script dropped (it loads from a CDN), `app-config.js` and the
    application bundle left to nmdose-viewer.js (it loads them in order once the login, if any, is done),
    absolute links made relative, `boot_head` put first in <head>."""
    text = _INLINE_SCRIPT_RE.sub("", text)
    bundles: list[str] = []

    def drop(m: re.Match[str]) -> str:
        bundles.append(m.group(1))
        return ""

    text = _SCRIPT_SRC_RE.sub(drop, text)
    app = [b for b in bundles if b.startswith("app.bundle.") or b == "app-config.js"]
    text = _ABSOLUTE_ATTR_RE.sub(r"\1", text)
    text = re.sub(r'<link rel="manifest"[^>]*>', "", text)
    scripts = json.dumps(app)
    boot = boot_head.replace("{scripts}", html.escape(scripts, quote=True))
    return text.replace("<head>", "<head>" + boot, 1)


@cache
def _index_source(path: Path, mtime: float) -> str:
    return path.read_text(encoding="utf-8")


def viewer_index(dist: Path, boot_head: str) -> str:
    """The served index page of the installed viewer (ViewerMissing when it is not installed)."""
    path = dist / "index.html"
    try:
        mtime = path.stat().st_mtime
    except OSError:
        raise ViewerMissing(f"the OHIF viewer is not installed in {dist.parent}: run `make deps`") from None
    return rewrite_index(_index_source(path, mtime), boot_head=boot_head)


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "install"
    if cmd == "check":
        ok = installed()
        print(f"OHIF {OHIF_VERSION}: {'installed' if ok else 'missing'} in {DEFAULT_ROOT}")
        return 0 if ok else 1
    if cmd != "install":
        print("usage: python -m nmdose.web.viewer_dist [install|check]", file=sys.stderr)
        return 2
    was = installed()
    dist = install()
    print(f"OHIF {OHIF_VERSION} ({OHIF_LICENSE}): {'already installed' if was else 'installed'} in {dist}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
