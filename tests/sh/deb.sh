#!/usr/bin/env bash
# tests/sh/deb.sh: `make deb` (pkg/deb.sh) builds a Debian package whose control file names the
# runtime libraries, whose files are the installed layout under /usr (stripped binary, compressed
# manual pages, copyright, changelog, md5sums that match), that lintian (when installed) finds no
# error in, and whose mamlrun, unpacked into a temporary folder, finds its library and experiments.
# Skipped (with a note) without dpkg-dev, or when the binary under test is not ./mamlrun (make
# sanitize): the package is built from ./mamlrun.
set -u
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
MAMLRUN=${MAMLRUN:-$ROOT/mamlrun}
case $MAMLRUN in /*) ;; *) MAMLRUN=$ROOT/$MAMLRUN ;; esac
unset MAKEFLAGS MFLAGS MAKELEVEL
if ! command -v dpkg-deb >/dev/null 2>&1 || ! command -v dpkg-shlibdeps >/dev/null 2>&1; then
  echo "note: dpkg-deb or dpkg-shlibdeps (dpkg-dev) is missing: make deb is not tested"
  exit 0
fi
if [ "$MAMLRUN" != "$ROOT/mamlrun" ]; then
  echo "note: testing $MAMLRUN, but make deb packages $ROOT/mamlrun: not tested here"
  exit 0
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/deb_test.XXXXXX") || exit 2
trap 'rm -rf "$T"' EXIT
failures=0 checks=0
check() { # check WHAT CONDITION...
  checks=$((checks + 1))
  local what=$1
  shift
  "$@" || { failures=$((failures + 1)); echo "FAIL: $what"; }
}

if ! make -s -C "$ROOT" deb BUILD="$T/build" >"$T/out" 2>&1; then
  echo "FAIL: make deb"
  cat "$T/out"
  exit 1
fi
deb=$(ls "$T"/build/deb/mamlrun_*.deb 2>/dev/null | head -n 1)
check "make deb wrote build/deb/mamlrun_<version>_<arch>.deb" test -f "$deb"
[ -f "$deb" ] || exit 1
version=$(sed -n 's/^#define MAMLRUN_VERSION "\(.*\)"$/\1/p' "$ROOT/vm/main.c")
check "the package's name has the version $version" test "$(basename "$deb")" = "mamlrun_${version}_$(dpkg --print-architecture).deb"

dpkg-deb -f "$deb" >"$T/control"
for field in Package Version Architecture Maintainer Installed-Size Depends Section Priority Description; do
  check "control has $field" grep -q "^$field: " "$T/control"
done
depends=$(dpkg-deb -f "$deb" Depends)
libs=(libc6 liblua5.4-0 libopenblas libpng16-16 unzip)
if ldd "$MAMLRUN" 2>/dev/null | grep -q libdnnl; then libs+=(libdnnl2); fi # (a build with oneDNN)
for lib in "${libs[@]}"; do
  check "Depends names $lib ($depends)" grep -q "$lib" <<<"$depends"
done

dpkg-deb -x "$deb" "$T/root"
for f in usr/bin/mamlrun usr/bin/mamlrun-data usr/share/mamlrun/lua/experiment.lua \
  usr/share/mamlrun/experiments/omniglot5w1s.lua usr/share/man/man1/mamlrun.1.gz \
  usr/share/man/man1/mamlrun-data.1.gz usr/share/doc/mamlrun/copyright usr/share/doc/mamlrun/changelog.gz; do
  check "the package has /$f" test -f "$T/root/$f"
done
check "no install manifest in the package (dpkg tracks the files)" test ! -e "$T/root/usr/share/mamlrun/install-manifest"
check "the binary is an ELF file without a symbol table (stripped)" sh -c \
  "readelf -h '$T/root/usr/bin/mamlrun' >/dev/null && ! readelf -S '$T/root/usr/bin/mamlrun' | grep -q '\.symtab'"
mkdir "$T/ctl"
dpkg-deb -e "$deb" "$T/ctl"
check "md5sums match the files" sh -c "cd '$T/root' && md5sum --quiet -c '$T/ctl/md5sums'"
check "changelog's version is $version" sh -c "zcat '$T/root/usr/share/doc/mamlrun/changelog.gz' | head -n 1 | grep -qF 'mamlrun ($version)'"

cd "$T" || exit 2
check "the unpacked mamlrun lists its experiments" sh -c "'$T/root/usr/bin/mamlrun' --list | grep -q '^  omniglot5w1s '"
check "the unpacked mamlrun answers --help of an experiment" \
  sh -c "'$T/root/usr/bin/mamlrun' sinusoid --help | grep -qE '^  amp_max +5\.0 '"
check "the unpacked mamlrun runs an experiment" sh -c "'$T/root/usr/bin/mamlrun' sinusoid iterations=2 meta_batch=2 \
  eval_every=0 test_tasks=2 progress=none threads=1 >/dev/null && ls -d runs/sinusoid-* >/dev/null"

if command -v lintian >/dev/null 2>&1; then
  check "lintian finds no error or warning" sh -c "lintian --fail-on error,warning '$deb' >'$T/lintian' 2>&1"
  grep -v 'running with root privileges' "$T/lintian" | sed 's/^/  lintian: /'
else
  echo "note: lintian is not installed: the package is not linted"
fi

echo "deb: $checks checks, $failures failed"
[ "$failures" -eq 0 ]
