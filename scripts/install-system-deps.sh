#!/usr/bin/env bash
# Debian packages snapsight uses, in three sets. Skips what is installed; explains when apt is missing.
#   install-system-deps.sh demo   what the library and the demo need:
#     dataset-fashion-mnist   Fashion-MNIST idx files under /usr/share/datasets/fashion-mnist/
#     fonts-noto-color-emoji  colour emoji rendered as images for the offline default model
#     fonts-dejavu-core       the font `snapsight evaluate` writes labels in (typographic attack)
#   install-system-deps.sh build  the above, and what building the default model needs (and
#                                 `snapsight classify --expand wordnet`):
#     tuxpaint-stamps-default Tux Paint's ~800 captioned cut-out pictures (about 160 MB download)
#     wordnet-base            the WordNet 3 database under /usr/share/wordnet (about 6 MB download)
#   install-system-deps.sh test   the above, and what only the test suite needs:
#     chromium                headless browser for the demo's browser test (about 400 MB)
set -euo pipefail
demo=(dataset-fashion-mnist fonts-noto-color-emoji fonts-dejavu-core)
build=("${demo[@]}" tuxpaint-stamps-default wordnet-base)
case "${1:-demo}" in
  demo) pkgs=("${demo[@]}") ;;
  build) pkgs=("${build[@]}") ;;
  test) pkgs=("${build[@]}" chromium) ;;
  *) echo "usage: $0 [demo|build|test]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: apt-get is not available; install ${missing[*]} by other means (Fashion-MNIST: pass --data to its idx folder). Tests that need them are skipped." >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "note: not root and no sudo; install ${missing[*]} with apt-get yourself. Tests that need them are skipped." >&2
    exit 0
  fi
fi
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
