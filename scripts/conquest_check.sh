#!/usr/bin/env bash
# Check the project's Conquest files (conquest/) against a real, stock Conquest DICOM server (issue 14 items 1-4).
#
#   scripts/conquest_check.sh [pytest args...]
#
# 1. Builds Conquest's dgate (tag CONQUEST_REF, default v1.5.0e) from its public source with the SQLite driver,
#    once: the build is cached in CONQUEST_CACHE (default ~/.cache/nmdose/conquest-<ref>); later runs take
#    seconds. Source: CONQUEST_SRC, a git directory (bare or not) holding the tag, or else a clone of
#    CONQUEST_URL (default https://github.com/marcelvanherk/Conquest-DICOM-Server.git). Needs g++, make and
#    libsqlite3-dev (Debian: apt-get install g++ make libsqlite3-dev); about 5 minutes on one core.
# 2. Runs tests/integration/test_conquest_real.py against it: Conquest on a free port in a temp dir (as `nobody`
#    when run as root), with a stock dicom.ini (linux/conf/dicom.ini.sqlite) plus conquest/dicom.ini, and the
#    stock dgatesop.lst plus conquest/dgatesop.nmdose.lst; DCMTK storescu sends real vendors' dose objects from
#    ../shared/realfiles (CONQUEST_REALFILES). CONQUEST_KEEP=1 keeps the temp dir (console.log, PacsTrouble.log).
# Not part of `make test` (the first build is too slow); the Lua-level tests of the script are
# (tests/integration/test_conquest_hook.py).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REF="${CONQUEST_REF:-v1.5.0e}"
CACHE="${CONQUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nmdose/conquest-$REF}"
URL="${CONQUEST_URL:-https://github.com/marcelvanherk/Conquest-DICOM-Server.git}"
TREE="$CACHE/tree"
DGATE="$CACHE/dgate"

extract() {
  # the files the build and the run need (src/dgate, linux/), blob by blob: a snapshot without its largest
  # files (sqlite3.c, binaries) still extracts; the system's libsqlite3 replaces the bundled amalgamation
  local git_dir="$1" rev
  rev="$(git --git-dir="$git_dir" rev-parse -q --verify "$REF^{commit}" || git --git-dir="$git_dir" rev-parse HEAD)"
  rm -rf "$TREE.tmp" && mkdir -p "$TREE.tmp"
  git --git-dir="$git_dir" ls-tree -r "$rev" -- src/dgate linux/conf linux/acrnema.map linux/dgatesop.lst \
    linux/dgate.dic | while read -r mode _type sha path; do
    mkdir -p "$TREE.tmp/$(dirname "$path")"
    if ! git --git-dir="$git_dir" cat-file blob "$sha" >"$TREE.tmp/$path" 2>/dev/null; then
      rm -f "$TREE.tmp/$path"
    elif [ "$mode" = 100755 ]; then
      chmod +x "$TREE.tmp/$path"
    fi
  done
  test -f "$TREE.tmp/src/dgate/src/total.cpp" || { echo "conquest_check: $REF has no src/dgate/src/total.cpp" >&2; exit 1; }
  rm -rf "$TREE" && mv "$TREE.tmp" "$TREE"
}

build() {
  local src="$TREE/src/dgate"
  test -f /usr/include/sqlite3.h || { echo "conquest_check: needs libsqlite3-dev (and g++, make)" >&2; exit 1; }
  echo "conquest_check: building dgate $REF in $CACHE (once; ~5 min)" >&2
  nice -n 10 gcc -O1 -o "$src/lua.o" -c "$src/lua_5.1.5/all.c" -I"$src/lua_5.1.5" -DLUA_USE_DLOPEN -DLUA_USE_POSIX
  (cd "$src/jpeg-6c" && chmod +x configure && nice -n 10 ./configure >/dev/null && nice -n 10 make -j1 >/dev/null)
  # maklinux's "sqlite" choice, with the system's libsqlite3, the bundled Lua 5.1 and no optional codecs
  # beyond libjpeg (maklinux builds jpeg-6c the same way; charls/openjpeg are not needed for dose objects)
  nice -n 10 g++ -std=c++11 -O1 -DUNIX -DNATIVE_ENDIAN=1 -DHAVE_LIBJPEG -DUSESQLITE \
    -Wno-write-strings -Wno-multichar -Wno-format-overflow -Wno-deprecated-declarations \
    -o "$DGATE.tmp" "$src/src/total.cpp" "$src/lua.o" \
    -I"$src/dicomlib" -I"$src/src" -I"$src/jpeg-6c" -I"$src/lua_5.1.5" -L"$src/jpeg-6c" -ljpeg -lsqlite3 -lpthread -ldl
  mv "$DGATE.tmp" "$DGATE"
}

if [ ! -x "$DGATE" ]; then
  mkdir -p "$CACHE"
  if [ -n "${CONQUEST_SRC:-}" ]; then
    if git --git-dir="$CONQUEST_SRC" rev-parse -q --verify "$REF^{commit}" >/dev/null; then
      git_dir="$CONQUEST_SRC"
    else
      git_dir="$(git -C "$CONQUEST_SRC" rev-parse --absolute-git-dir)"
    fi
  else
    git_dir="$CACHE/src.git"
    # one commit, without the repository's large binaries (none of them is needed)
    [ -d "$git_dir" ] || git clone --bare --depth 1 --branch "$REF" --filter=blob:limit=20m "$URL" "$git_dir"
  fi
  extract "$git_dir"
  build
fi

cd "$ROOT"
CONQUEST_DGATE="$DGATE" CONQUEST_TREE="$TREE" exec "$ROOT/.venv/bin/python" -m pytest -p no:cacheprovider -v \
  tests/integration/test_conquest_real.py "$@"
