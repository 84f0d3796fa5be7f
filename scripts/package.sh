#!/usr/bin/env bash
# Builds the release binary and assembles the Azure Functions deployment zip.
#
#   scripts/package.sh [--out PATH] [--binary PATH] [--target TRIPLE]
#
#   --out PATH       the zip to write (default: dist/sqlvm-backup.zip in the repository)
#   --binary PATH    package this binary instead of building one (the tests pass the debug build)
#   --target TRIPLE  build for this target (default: x86_64-unknown-linux-musl if usable, else the host's)
#
# Zip layout (the app root is the zip root; ../shared/docs/azure-functions.md §4.2):
#   host.json
#   <Function>/function.json   one folder per functions/<Function>/function.json, found, not listed here
#   sqlvm-backup               host.json's customHandler.description.defaultExecutablePath, mode 0755
#
# Target: x86_64-unknown-linux-musl (a static binary that runs on any Linux image) when the rustup
# target is installed and musl-gcc exists (aws-lc-sys and the bundled SQLite compile C; rust-deps.md
# §7). Otherwise the host's glibc target, with a note saying what that binary needs at run time.
#
# The zip is reproducible for a given binary: sorted entries, fixed timestamps (SOURCE_DATE_EPOCH,
# else the HEAD commit's time), no uid/gid extra fields. Needs zip; python3 reads host.json.
set -euo pipefail
export LC_ALL=C

MUSL=x86_64-unknown-linux-musl
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() { sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "package.sh: error: $*" >&2; exit 2; }
note() { echo "package.sh: note: $*" >&2; }
absolute() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }

out="$root/dist/sqlvm-backup.zip"
binary=""
target=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || die "--out needs a path"; out="$(absolute "$2")"; shift 2 ;;
    --out=*) out="$(absolute "${1#--out=}")"; shift ;;
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary="$(absolute "$2")"; shift 2 ;;
    --binary=*) binary="$(absolute "${1#--binary=}")"; shift ;;
    --target) [ $# -ge 2 ] || die "--target needs a triple"; target="$2"; shift 2 ;;
    --target=*) target="${1#--target=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ -z "$binary" ] || [ -z "$target" ] || die "--binary and --target exclude each other (--binary skips the build)"
if [ -n "$binary" ] && [ ! -f "$binary" ]; then die "--binary $binary: no such file"; fi
case "$out" in *.zip) ;; *) die "--out $out: the package must end in .zip" ;; esac
command -v zip >/dev/null || die "zip is not installed (apt-get install -y zip)"

# --- what the Functions host will start ---------------------------------------------------------
[ -f "$root/host.json" ] || die "$root/host.json is missing"
if command -v python3 >/dev/null; then
  exe="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["customHandler"]["description"]["defaultExecutablePath"])' "$root/host.json")" \
    || die "host.json has no customHandler.description.defaultExecutablePath"
else
  exe="$(sed -n 's/.*"defaultExecutablePath"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$root/host.json" | head -n 1)"
fi
case "$exe" in
  ''|/*|*..*|*/*) die "host.json's defaultExecutablePath '$exe' must be a plain file name at the app root" ;;
esac

functions=()
for f in "$root"/functions/*/function.json; do   # glob order is sorted (LC_ALL=C)
  [ -f "$f" ] || continue
  name="$(basename "$(dirname "$f")")"
  case "$name" in host.json|"$exe") die "function folder '$name' collides with another root entry" ;; esac
  functions+=("$name")
done
[ ${#functions[@]} -gt 0 ] || die "no functions/*/function.json found under $root"

# --- the binary ---------------------------------------------------------------------------------
glibc_note=""
if [ -z "$binary" ]; then
  command -v cargo >/dev/null || die "cargo is not installed"
  if [ -z "$target" ]; then
    why=""
    if ! command -v rustup >/dev/null; then
      why="rustup is not installed"
    elif ! printf '%s\n' "$(rustup target list --installed 2>/dev/null || true)" | grep -qx "$MUSL"; then
      why="the rustup target $MUSL is not installed"
    elif ! command -v musl-gcc >/dev/null; then
      why="musl-gcc (Debian package musl-tools) is not installed"
    fi
    if [ -z "$why" ]; then target="$MUSL"; else glibc_note="$why"; fi
  fi

  build=(cargo build --release --locked --manifest-path "$root/Cargo.toml")
  [ -z "$target" ] || build+=(--target "$target")
  if [ "$target" = "$MUSL" ] && [ -z "${CC_x86_64_unknown_linux_musl:-}" ]; then
    command -v musl-gcc >/dev/null || die "--target $MUSL needs musl-gcc: apt-get install -y musl-tools"
    export CC_x86_64_unknown_linux_musl=musl-gcc
  fi
  echo "package.sh: ${build[*]}" >&2
  "${build[@]}"

  target_dir="${CARGO_TARGET_DIR:-}"
  if command -v python3 >/dev/null; then
    target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
  fi
  target_dir="$(absolute "${target_dir:-$root/target}")"
  binary="$target_dir/${target:+$target/}release/sqlvm-backup"
  [ -f "$binary" ] || die "the build did not produce $binary"
fi

# --- stage --------------------------------------------------------------------------------------
stage="$(mktemp -d "${TMPDIR:-/tmp}/sqlvm-package.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/app"
app="$stage/app"

cp "$root/host.json" "$app/host.json"
for name in "${functions[@]}"; do
  mkdir "$app/$name"
  cp "$root/functions/$name/function.json" "$app/$name/function.json"
done
cp "$binary" "$app/$exe"            # the copy is stripped; the build output stays as it is
if command -v strip >/dev/null; then
  strip "$app/$exe" 2>/dev/null || note "strip failed on $binary; packaging it unstripped"
fi
chmod 0755 "$app/$exe"
find "$app" -type d -exec chmod 0755 {} +
find "$app" -type f ! -path "$app/$exe" -exec chmod 0644 {} +

# What the packaged binary needs from the host's C library (objdump reads the dynamic symbols).
needs="unknown (objdump not found)"
if command -v objdump >/dev/null; then
  # Whole outputs into variables: `objdump | grep -q` would fail under pipefail when grep stops early.
  libs="$(objdump -p "$app/$exe" 2>/dev/null | awk '$1 == "NEEDED" { print $2 }' | paste -sd, - | sed 's/,/, /g' || true)"
  if [ -n "$libs" ]; then
    glibc="$(objdump -T "$app/$exe" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1 || true)"
    needs="dynamically linked against $libs${glibc:+; needs glibc >= $glibc}"
  else
    needs="statically linked"
  fi
fi

if [ -n "$glibc_note" ]; then
  host_glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null || echo 'glibc ?')"
  # shellcheck source=/dev/null
  host_os="$( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null || uname -sr)"
  {
    echo "package.sh: note: $MUSL is not available here ($glibc_note): falling back to a glibc build for the host target."
    echo "package.sh: note: the binary is $needs."
    echo "package.sh: note: it was built on $host_os with $host_glibc; a glibc build is only safe on hosts whose glibc is at least as new as the build machine's."
    echo "package.sh: note: Azure Functions v4 Linux images come in Debian 12 (bookworm, glibc 2.36) and Debian 11 (bullseye, glibc 2.31) variants: check the app's image before deploying this zip."
    echo "package.sh: note: for a static binary that runs on either, install the musl target and rerun scripts/package.sh (it then builds for musl by itself):"
    echo "package.sh: note:   rustup target add $MUSL && apt-get install -y musl-tools"
  } >&2
fi

# --- zip ----------------------------------------------------------------------------------------
epoch="${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || true)}"
[ -n "$epoch" ] && [ "$epoch" -ge 315619200 ] 2>/dev/null || epoch=315619200   # zip times start in 1980
find "$app" -exec touch -h -d "@$epoch" {} +

entries=(host.json)
for name in "${functions[@]}"; do entries+=("$name/function.json"); done
entries+=("$exe")
mapfile -t entries < <(printf '%s\n' "${entries[@]}" | sort)

# -X: no uid/gid or extra timestamps (the unix mode is kept: it lives in the external attributes);
# -D: no directory entries; TZ=UTC: zip stores local time.
(cd "$app" && TZ=UTC zip -X -D -q "$stage/package.zip" "${entries[@]}")

mkdir -p "$(dirname "$out")"
mv -f "$stage/package.zip" "$out"     # never zip into an existing archive: zip would update it
size="$(stat -c %s "$out")"
echo "package.sh: $exe: $needs (from $binary)"
echo "package.sh: wrote $out ($size bytes, $(numfmt --to=iec-i --suffix=B "$size" 2>/dev/null || echo "$size B"))"
