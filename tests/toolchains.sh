#!/bin/sh
# Installs the toolchains the export tests build with (C, Rust, JavaScript, Go) from the
# system package manager when they are missing, so that no language is silently skipped.
set -e
missing=""
command -v cc >/dev/null 2>&1 || missing="$missing gcc"
command -v rustc >/dev/null 2>&1 || missing="$missing rustc"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v go >/dev/null 2>&1 || missing="$missing golang-go"
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "tests/toolchains.sh: please install:$missing" >&2
    exit 1
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "tests/toolchains.sh: installing$missing" >&2
$sudo apt-get update -q >/dev/null || echo "tests/toolchains.sh: apt-get update failed; trying the current index" >&2
# shellcheck disable=SC2086  # word splitting is wanted: one argument per package
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing >/dev/null
