#!/bin/sh
# fetch_omniglot.sh: get the two official Omniglot archives, check them, unpack them.
# Installed as mamlrun-data (`make install`); in a checkout, `make data` runs it.
#
#   mamlrun-data                                        download from the brendenlake/omniglot repository
#   OMNIGLOT_ZIPS=../shared/omniglot mamlrun-data       take the zips from a local folder
#   sh data/fetch_omniglot.sh                           the same, from a checkout
#
# Result: DEST/images_background/ and images_evaluation/, each <alphabet>/<character>/*.png, where
# DEST is $OMNIGLOT_DIR when set; else, for this file in a checkout (data/fetch_omniglot.sh), the
# checkout's data/omniglot; else (the installed mamlrun-data) the per-user folder
# $XDG_DATA_HOME/mamlrun/omniglot (default ~/.local/share/mamlrun/omniglot). mamlrun reads it from
# $OMNIGLOT_DIR, else the per-user folder, else a checkout's data/omniglot (docs/omniglot.md). An archive is accepted when its md5 is the official
# one, or when its sha256 is listed in a SHA256SUMS file beside it (a re-packed mirror with identical
# images). Downloads are kept in $OMNIGLOT_DOWNLOADS (default: the checkout's data/cache, or
# $XDG_CACHE_HOME/mamlrun, default ~/.cache/mamlrun). Unpacking needs `unzip` (Debian package unzip)
# or, failing that, `bsdtar` (Debian package libarchive-tools). Safe to re-run: a set that was
# unpacked completely before (marker file .<set>.ok) is skipped.
set -eu

die() {
  echo "fetch_omniglot: $*" >&2
  exit 1
}

# the checkout this file belongs to; `make install` empties it in the installed copy
CHECKOUT=$(cd "$(dirname "$0")/.." && pwd)

case ${1:-} in
  -h | --help)
    sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//'
    exit 0 ;;
  "") ;;
  *) echo "fetch_omniglot: unknown argument '$1' (it takes none; see --help)" >&2; exit 2 ;;
esac

user_dir() {
  case ${XDG_DATA_HOME:-} in
    /*) echo "$XDG_DATA_HOME/mamlrun" ;;
    *) [ -n "${HOME:-}" ] || die "neither OMNIGLOT_DIR, XDG_DATA_HOME nor HOME is set: set OMNIGLOT_DIR=DIR"
       echo "$HOME/.local/share/mamlrun" ;;
  esac
}
user_cache() {
  case ${XDG_CACHE_HOME:-} in
    /*) echo "$XDG_CACHE_HOME/mamlrun" ;;
    *) [ -z "${HOME:-}" ] || echo "$HOME/.cache/mamlrun" ;;
  esac
}

if [ -n "$CHECKOUT" ]; then
  DEST=${OMNIGLOT_DIR:-$CHECKOUT/data/omniglot}
  DOWNLOADS=${OMNIGLOT_DOWNLOADS:-$CHECKOUT/data/cache}
else
  DEST=${OMNIGLOT_DIR:-$(user_dir)/omniglot}
  DOWNLOADS=${OMNIGLOT_DOWNLOADS:-$(user_cache)}
fi
ZIPS=${OMNIGLOT_ZIPS:-}
URL=https://github.com/brendenlake/omniglot/raw/master/python

official_md5() {
  case $1 in
    images_background) echo 68d2efa1b9178cc56df9314c21c6e718 ;;
    images_evaluation) echo 6b91aef0f799c5bb55b94e3f2daec811 ;;
  esac
}

expected_pngs() {
  case $1 in
    images_background) echo 19280 ;;
    images_evaluation) echo 13180 ;;
  esac
}

# check_zip SET FILE: succeed when FILE has the official md5 or a sha256 listed beside it
check_zip() {
  set_name=$1
  zip=$2
  [ -s "$zip" ] || return 1
  md5=$(md5sum "$zip" | cut -d' ' -f1)
  [ "$md5" = "$(official_md5 "$set_name")" ] && return 0
  sums=$(dirname "$zip")/SHA256SUMS
  if [ -f "$sums" ]; then
    sha=$(sha256sum "$zip" | cut -d' ' -f1)
    grep -q "^$sha  *\*\{0,1\}$set_name.zip\$" "$sums" && return 0
  fi
  return 1
}

unpack() {
  zip=$1
  into=$2
  if command -v unzip >/dev/null 2>&1; then
    unzip -q -o "$zip" -d "$into"
  elif command -v bsdtar >/dev/null 2>&1; then
    bsdtar -xf "$zip" -C "$into"
  else
    die "neither unzip nor bsdtar is installed: apt-get install unzip"
  fi
}

download() {
  set_name=$1
  out=$2
  mkdir -p "$(dirname "$out")"
  hint="without network, put the zips in a folder and run with OMNIGLOT_ZIPS=DIR"
  if command -v curl >/dev/null 2>&1; then
    curl -fL --retry 3 -o "$out.part" "$URL/$set_name.zip" ||
      { rm -f "$out.part"; die "download of $URL/$set_name.zip failed; $hint"; }
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$out.part" "$URL/$set_name.zip" ||
      { rm -f "$out.part"; die "download of $URL/$set_name.zip failed; $hint"; }
  else
    die "neither curl nor wget is installed: apt-get install curl, or set OMNIGLOT_ZIPS=DIR to a folder with the zips"
  fi
  mv "$out.part" "$out"
}

mkdir -p "$DEST"
echo "fetch_omniglot: Omniglot into $DEST"
for set_name in images_background images_evaluation; do
  if [ -f "$DEST/.$set_name.ok" ] && [ -d "$DEST/$set_name" ]; then
    echo "fetch_omniglot: $DEST/$set_name is already unpacked"
    continue
  fi
  if [ -n "$ZIPS" ]; then
    zip=$ZIPS/$set_name.zip
    [ -f "$zip" ] || die "OMNIGLOT_ZIPS=$ZIPS has no $set_name.zip: put the official archive there, or unset OMNIGLOT_ZIPS to download it"
    if ! check_zip "$set_name" "$zip"; then
      if [ -f "$ZIPS/SHA256SUMS" ]; then sums="its sha256 is not listed in $ZIPS/SHA256SUMS"; else sums="there is no SHA256SUMS beside it"; fi
      die "$zip is corrupt or not the Omniglot archive: its md5 is not the official $(official_md5 "$set_name") and $sums; replace it with the official $set_name.zip"
    fi
  else
    [ -n "$DOWNLOADS" ] || die "no folder for the downloads (XDG_CACHE_HOME and HOME are not set): set OMNIGLOT_DOWNLOADS=DIR"
    zip=$DOWNLOADS/$set_name.zip
    if ! check_zip "$set_name" "$zip"; then
      echo "fetch_omniglot: downloading $URL/$set_name.zip"
      download "$set_name" "$zip"
      check_zip "$set_name" "$zip" ||
        die "downloaded $zip does not have the official md5 $(official_md5 "$set_name"): delete it and run again, or use OMNIGLOT_ZIPS=DIR"
    fi
  fi
  tmp=$DEST/.unpack.$$
  rm -rf "$tmp"
  mkdir -p "$tmp"
  unpack "$zip" "$tmp" || { rm -rf "$tmp"; die "unpacking $zip failed"; }
  [ -d "$tmp/$set_name" ] || { rm -rf "$tmp"; die "$zip has no top folder $set_name/"; }
  n=$(find "$tmp/$set_name" -type f -name '*.png' | wc -l)
  want=$(expected_pngs "$set_name")
  [ "$n" -eq "$want" ] || { rm -rf "$tmp"; die "$zip holds $n PNG files, expected $want: replace the archive"; }
  rm -rf "${DEST:?}/$set_name"
  mv "$tmp/$set_name" "$DEST/$set_name"
  rm -rf "$tmp"
  touch "$DEST/.$set_name.ok"
  echo "fetch_omniglot: unpacked $n images into $DEST/$set_name"
done
