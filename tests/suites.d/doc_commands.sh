#!/usr/bin/env bash
# tests/suites.d/doc_commands.sh: every experiment command the README and docs/*.md show works, TAP.
# A code line (indented 4 or more, or in a ``` block) that runs mamlrun (`./mamlrun ...` or `mamlrun ...`) on an
# experiment script is run from the checkout with `--check` added: the run is resolved and built as it
# would be (every key and value, the algorithm's own checks, the data, the network and learner) and
# nothing runs or is written. A line with --help or --check is run as it is (it runs nothing either). So a key
# renamed, a script removed or a combination an algorithm refuses fails here, with the doc's file and
# line. Not checked, each said in a "# not checked" line: lines with placeholders (<...>, SCRIPT, RUN...,
# [...], |, *), other options (-e, -i, -, --compare), plain scripts (data/show_task.lua, bench/*.lua:
# they would run) and the scripts a doc writes itself first (DOC_WRITTEN). A script that is none of
# these (a file that does not exist) is a failure.
# Without the Omniglot dataset (data/omniglot, or OMNIGLOT_ZIPS to unpack it from, as in CI) a command
# that needs it is skipped with [dataset] (MAMLRUN_REQUIRE_SUITES=dataset makes that a failure).
# Environment: DOCS (the files, default README.md docs/*.md), MIN_CHECKED (the checks a run must make,
# default 15: a parser that finds no command fails), MAMLRUN. tests/sh/doc_commands_checks.sh shows
# this suite failing on broken docs.
set -u
cd "${ROOT:-$(dirname "$0")/../..}" || exit 2
MAMLRUN=${MAMLRUN:-./mamlrun}
DOCS=${DOCS:-"README.md $(echo docs/*.md)"}
MIN_CHECKED=${MIN_CHECKED:-15}
DOC_WRITTEN=" my5w1s.lua "   # README.md, "A script of your own": written by the printf line above its commands
TMP=$(mktemp -d "${TMPDIR:-/tmp}/doc_commands.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT

have_data=0
if [ -d data/omniglot/images_background ] && [ -d data/omniglot/images_evaluation ]; then
  have_data=1
elif [ -n "${OMNIGLOT_ZIPS:-}" ]; then
  if sh data/fetch_omniglot.sh >"$TMP/fetch" 2>&1; then have_data=1; else
    echo "not ok 1 - data/fetch_omniglot.sh with OMNIGLOT_ZIPS=$OMNIGLOT_ZIPS"
    sed 's/^/# /' "$TMP/fetch"
    echo "1..1"
    exit 1
  fi
fi

n=0 failed=0 checked=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
  n=$((n + 1)) failed=$((failed + 1))
  echo "not ok $n - $1"
  shift
  for f in "$@"; do sed 's/^/#   | /' "$f" | head -n 12; done
}

# check LABEL ARGS...: run mamlrun ARGS, exit status 0 expected
check() {
  local label=$1 rc=0
  shift
  "$MAMLRUN" "$@" </dev/null >"$TMP/out" 2>"$TMP/err" || rc=$?
  checked=$((checked + 1))
  if [ "$rc" -eq 0 ]; then
    ok "$label"
  elif [ "$have_data" -eq 0 ] && grep -q "no Omniglot" "$TMP/err"; then
    n=$((n + 1))
    echo "ok $n - $label # SKIP [dataset] no Omniglot in data/omniglot (set OMNIGLOT_ZIPS=DIR with the two zips)"
  else
    not_ok "$label (exit status $rc)" "$TMP/err"
  fi
}

for doc in $DOCS; do
  [ -f "$doc" ] || { not_ok "$doc: no such file"; continue; }
  lineno=0 fenced=0
  while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    case $line in '```'* | ' '*'```'*) fenced=$((1 - fenced)); continue ;; esac
    if [ "$fenced" -eq 0 ]; then case $line in "    "*) ;; *) continue ;; esac; fi
    cmd=${line#"${line%%[! ]*}"}          # without the indentation
    case $cmd in ./mamlrun\ * | mamlrun\ *) ;; *) continue ;; esac
    cmd=${cmd%%  #*}                      # without a trailing comment
    cmd=${cmd%% \#*}
    cmd=${cmd%"${cmd##*[! ]}"}            # and its trailing blanks
    label="$doc:$lineno: $cmd"
    read -ra words <<<"$cmd"
    script=${words[1]:-}
    args=("${words[@]:1}")
    case $cmd in
      *"<"* | *"["* | *"|"* | *"*"* | *SCRIPT* | *RUN...*)
        echo "# not checked (a placeholder): $label"; continue ;;
    esac
    case $script in
      --list | --version) check "$label" "${args[@]}"; continue ;;
      -*) echo "# not checked (an option, not an experiment): $label"; continue ;;
    esac
    case $DOC_WRITTEN in *" $script "*) echo "# not checked (the doc writes this script first): $label"; continue ;; esac
    if [ -f "experiments/$script" ] || [ -f "experiments/$script.lua" ] || \
       { case $script in experiments/*.lua) [ -f "$script" ] ;; *) false ;; esac; }; then
      case " ${args[*]} " in
        *" --help "* | *" -h "* | *" help=true "* | *" --check "* | *" check=true "*) check "$label" "${args[@]}" ;;
        *) check "$label" "${args[@]}" --check ;;
      esac
    elif [ -f "$script" ] || [ -f "$script.lua" ]; then
      echo "# not checked (a plain script, not an experiment: it would run): $label"
    else
      not_ok "$label: no script $script (neither a file nor a shipped experiment)"
    fi
  done <"$doc"
done

if [ "$checked" -ge "$MIN_CHECKED" ]; then
  ok "the docs' commands checked: $checked (at least $MIN_CHECKED)"
else
  not_ok "the docs' commands checked: $checked, fewer than $MIN_CHECKED (a command the parser no longer finds?)"
fi
echo "1..$n"
[ "$failed" -eq 0 ]
