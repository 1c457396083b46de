#!/bin/sh
# pkg/install.sh: `make install` and `make uninstall`.
#
#   PREFIX=/usr/local [DESTDIR=] [BIN=mamlrun] sh pkg/install.sh install
#   PREFIX=/usr/local [DESTDIR=] sh pkg/install.sh uninstall
#
# install puts under DESTDIR/PREFIX:
#   bin/mamlrun                     the host (BIN: the binary to install, default ./mamlrun)
#   bin/mamlrun-data                data/fetch_omniglot.sh, filling the per-user Omniglot folder
#   share/mamlrun/lua/              the Lua library (the host finds it from bin/: vm/main.c)
#   share/mamlrun/experiments/      the shipped experiments (mamlrun NAME, mamlrun --list)
#   share/mamlrun/data/show_task.lua
#   share/man/man1/mamlrun.1, mamlrun-data.1
#   share/doc/mamlrun/              README.md and docs/*.md
#   share/mamlrun/install-manifest  what it installed: every file, and every folder it created
# Each file is written beside its place and renamed into it, so a running mamlrun or a reader never
# sees half a file. Installing again over an install replaces its files, removes those the new one no
# longer has, and keeps the record of the folders the first one created. uninstall removes the files
# of the manifest, then the folders it records as created, deepest first, when they are empty (a
# folder that holds other files stays, and is named). MANIFEST=0 writes no manifest (a Debian
# package's files are dpkg's to track: `make deb`).
set -eu

die() {
  echo "install.sh: $*" >&2
  exit 1
}

action=${1:-}
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BIN=${BIN:-mamlrun}
MANIFEST=${MANIFEST:-1}
case $PREFIX in
  /*) ;;
  *) die "PREFIX must be an absolute path, got '$PREFIX'" ;;
esac
PREFIX=${PREFIX%/}
[ -n "$PREFIX" ] || die "PREFIX=/ is not supported: use PREFIX=/usr"
case $DESTDIR in
  "" | /*) ;;
  *) DESTDIR=$(pwd)/$DESTDIR ;;
esac
DESTDIR=${DESTDIR%/}
cd "$(dirname "$0")/.." # the checkout: the sources are relative to it
[ -f lua/experiment.lua ] || die "run from a mamlrun checkout (no lua/experiment.lua beside pkg/)"
MANIFEST_PATH=$PREFIX/share/mamlrun/install-manifest

# ---------------------------------------------------------------- install

# ensure_dir DIR: create DIR (a path under PREFIX) and its missing parents, recording each created
ensure_dir() {
  missing=""
  d=$1
  while [ ! -d "$DESTDIR$d" ]; do
    missing="$d
$missing"
    d=$(dirname "$d")
  done
  for m in $missing; do # (the installed paths have no spaces: checked in install_file)
    mkdir -m 755 "$DESTDIR$m"
    echo "dir $m" >>"$NEW"
  done
}

# install_file SRC DEST MODE [FILTER]: write SRC (through the sed expression FILTER) to DEST.part,
# then rename it to DEST
install_file() {
  case $2 in *[[:space:]]*) die "cannot install to '$2': a path with a space" ;; esac
  ensure_dir "$(dirname "$2")"
  part=$DESTDIR$2.part.$$
  if [ -n "${4:-}" ]; then
    sed -e "$4" "$1" >"$part" || { rm -f "$part"; die "cannot write $DESTDIR$2"; }
  else
    cp "$1" "$part" || { rm -f "$part"; die "cannot write $DESTDIR$2"; }
  fi
  chmod "$3" "$part"
  mv -f "$part" "$DESTDIR$2"
  echo "file $2" >>"$NEW"
}

do_install() {
  [ -f "$BIN" ] && [ -x "$BIN" ] || die "no built binary $BIN: run make first"
  [ -z "$DESTDIR" ] || mkdir -p "$DESTDIR/"
  NEW=$(mktemp "${TMPDIR:-/tmp}/mamlrun-install.XXXXXX")
  trap 'rm -f "$NEW"' EXIT
  old=$DESTDIR$MANIFEST_PATH
  if [ "$MANIFEST" = 1 ] && [ -f "$old" ]; then
    grep '^dir ' "$old" >>"$NEW" || true # folders an earlier install created stay on record
  fi
  install_file "$BIN" "$PREFIX/bin/mamlrun" 755
  # the installed data command belongs to no checkout: it fills the per-user folder
  install_file data/fetch_omniglot.sh "$PREFIX/bin/mamlrun-data" 755 's|^CHECKOUT=.*|CHECKOUT=|'
  for f in $(cd lua && find . -name '*.lua' | LC_ALL=C sort); do
    install_file "lua/$f" "$PREFIX/share/mamlrun/lua/${f#./}" 644
  done
  for f in experiments/*.lua data/show_task.lua; do
    install_file "$f" "$PREFIX/share/mamlrun/$f" 644
  done
  for f in docs/*.1; do
    install_file "$f" "$PREFIX/share/man/man1/${f#docs/}" 644
  done
  install_file README.md "$PREFIX/share/doc/mamlrun/README.md" 644
  for f in docs/*.md; do
    install_file "$f" "$PREFIX/share/doc/mamlrun/$f" 644
  done
  n=$(grep -c '^file ' "$NEW")
  if [ "$MANIFEST" = 1 ]; then
    echo "file $MANIFEST_PATH" >>"$NEW"
    awk '!seen[$0]++' "$NEW" >"$DESTDIR$MANIFEST_PATH.part.$$"
    if [ -f "$old" ]; then # files of the earlier install that this one no longer has
      grep '^file ' "$old" | while IFS=' ' read -r _ path; do
        grep -qxF "file $path" "$NEW" || rm -f "$DESTDIR$path"
      done
    fi
    mv -f "$DESTDIR$MANIFEST_PATH.part.$$" "$DESTDIR$MANIFEST_PATH"
    echo "installed $n files into $DESTDIR$PREFIX (list: $DESTDIR$MANIFEST_PATH; make uninstall removes them)"
  else
    echo "installed $n files into $DESTDIR$PREFIX (no manifest)"
  fi
}

# ---------------------------------------------------------------- uninstall

do_uninstall() {
  manifest=$DESTDIR$MANIFEST_PATH
  [ -f "$manifest" ] || die "no $manifest: nothing was installed under $DESTDIR$PREFIX by make install (a Debian package is removed with: apt remove mamlrun; an install made before make install kept a manifest: delete $DESTDIR$PREFIX/bin/mamlrun and $DESTDIR$PREFIX/share/mamlrun by hand)"
  list=$(mktemp "${TMPDIR:-/tmp}/mamlrun-uninstall.XXXXXX")
  trap 'rm -f "$list"' EXIT
  cp "$manifest" "$list"
  files=0 dirs=0 kept=0
  while IFS=' ' read -r kind path; do
    [ "$kind" = file ] || continue
    if [ -f "$DESTDIR$path" ] || [ -L "$DESTDIR$path" ]; then
      rm -f "$DESTDIR$path"
      files=$((files + 1))
    else
      echo "uninstall: $DESTDIR$path was already gone"
    fi
  done <"$list"
  # the folders it created, deepest (last created) first
  for d in $(grep '^dir ' "$list" | sed 's/^dir //' | awk '{ line[NR] = $0 } END { for (i = NR; i > 0; i--) print line[i] }'); do
    [ -d "$DESTDIR$d" ] || continue
    if rmdir "$DESTDIR$d" 2>/dev/null; then
      dirs=$((dirs + 1))
    else
      echo "uninstall: left $DESTDIR$d: it holds files that make install did not put there"
      kept=$((kept + 1))
    fi
  done
  echo "removed $files files and $dirs folders from $DESTDIR$PREFIX"
  [ "$kept" -eq 0 ] || echo "uninstall: $kept folders left (not empty)"
}

case $action in
  install) do_install ;;
  uninstall) do_uninstall ;;
  *) echo "usage: PREFIX=DIR [DESTDIR=DIR] sh pkg/install.sh install|uninstall" >&2; exit 2 ;;
esac
