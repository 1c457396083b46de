#!/bin/sh
# pkg/deb.sh: `make deb`: a Debian package of this build, $BUILD/deb/mamlrun_<version>_<arch>.deb.
#
# Stages `make install` with PREFIX=/usr (no manifest: dpkg tracks the files), strips the binary,
# compresses the manual pages, adds /usr/share/doc/mamlrun/copyright and changelog.gz
# (pkg/debian/), writes DEBIAN/control from pkg/debian/control.in with the shared-library
# dependencies dpkg-shlibdeps finds for the binary (liblua5.4-0, libopenblas0, libpng16-16, libc6, libdnnl2,
# Open MPI's when built with it) and DEBIAN/md5sums, and builds it with dpkg-deb. Runs lintian on
# it when lintian is installed and fails on its errors and warnings. Needs dpkg-dev (dpkg-shlibdeps).
set -eu

die() {
  echo "deb.sh: $*" >&2
  exit 1
}

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -x mamlrun ] || die "no ./mamlrun: run make first"
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found: this needs a Debian system (package dpkg)"
command -v dpkg-shlibdeps >/dev/null 2>&1 || die "dpkg-shlibdeps not found: apt-get install dpkg-dev"

version=$(sed -n 's/^#define MAMLRUN_VERSION "\(.*\)"$/\1/p' vm/main.c)
[ -n "$version" ] || die "no MAMLRUN_VERSION in vm/main.c"
logged=$(sed -n '1s/^mamlrun (\([^)]*\)).*/\1/p' pkg/debian/changelog)
[ "$logged" = "$version" ] ||
  die "pkg/debian/changelog's first entry is version '$logged', vm/main.c says '$version': add an entry"
arch=$(dpkg --print-architecture)
out=$BUILD/deb
root=$out/root
deb=$out/mamlrun_${version}_$arch.deb

rm -rf "$root"
mkdir -p "$root"
MANIFEST=0 PREFIX=/usr DESTDIR="$root" BIN=mamlrun sh pkg/install.sh install >/dev/null

# the Debian layout: a stripped binary, compressed manual pages, copyright and changelog
strip --remove-section=.comment --remove-section=.note --strip-unneeded "$root/usr/bin/mamlrun"
gzip -9n "$root"/usr/share/man/man1/*.1
doc=$root/usr/share/doc/mamlrun
cp pkg/debian/copyright "$doc/copyright"
gzip -9n -c pkg/debian/changelog >"$doc/changelog.gz"
chmod 644 "$doc/copyright" "$doc/changelog.gz"

# the shared-library dependencies of the binary (dpkg-shlibdeps wants a debian/control beside it)
work=$out/shlibdeps
rm -rf "$work"
mkdir -p "$work/debian"
printf 'Source: mamlrun\n\nPackage: mamlrun\nArchitecture: any\n' >"$work/debian/control"
abs_root=$(cd "$root" && pwd)
depends=$(cd "$work" && dpkg-shlibdeps -O "$abs_root/usr/bin/mamlrun" 2>"$abs_root/../shlibdeps.log" |
  sed -n 's/^shlibs:Depends=//p') || true
[ -n "$depends" ] || die "dpkg-shlibdeps found no dependencies: $(cat "$out/shlibdeps.log")"
rm -rf "$work"

mkdir -m 755 "$root/DEBIAN"
size=$(du -sk --apparent-size "$root/usr" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
  pkg/debian/control.in >"$root/DEBIAN/control"
(cd "$root" && find usr -type f | LC_ALL=C sort | xargs md5sum) >"$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Zxz --build "$root" "$deb.part" >/dev/null
mv -f "$deb.part" "$deb"
echo "built $deb"
echo "  Depends: $depends, unzip | libarchive-tools"
if command -v lintian >/dev/null 2>&1; then
  lintian --fail-on error,warning --info "$deb" || die "lintian reports errors or warnings in $deb"
  echo "lintian: no errors or warnings"
else
  echo "lintian is not installed (apt-get install lintian): the package was not checked"
fi
