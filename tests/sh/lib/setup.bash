# tests/sh/lib/setup.bash: the start the shell tests share (sourced first, not a test itself): set -u;
# ROOT, the checkout, which becomes the working folder; MAMLRUN, the binary under test (which must be
# built); $T, a scratch folder named after the test and removed on exit.
set -u
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
MAMLRUN=${MAMLRUN:-$ROOT/mamlrun}
cd "$ROOT" || exit 2
T=$(mktemp -d "${TMPDIR:-/tmp}/$(basename "$0" .sh).XXXXXX") || exit 2
trap 'rm -rf "$T"' EXIT
if [ ! -x "$MAMLRUN" ]; then echo "FAIL: $MAMLRUN is not built"; exit 1; fi
