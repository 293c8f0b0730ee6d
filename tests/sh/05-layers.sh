#!/usr/bin/env bash
# The layers of the source tree, from the bottom:
#
#   common/      used by every layer, includes none above it
#   dataplane/   includes common/ only
#   control/     includes common/ and dataplane/ (only its one port to the dataplane and the
#                message definitions on the rings; docs/architecture.md §Layers)
#   p3d/         the program: includes everything, nothing includes it
#
# Checked from the #include "…" lines of every source file: a file that reaches up a layer
# fails the test, with the line that does.
set -uo pipefail
root=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root" || exit 1

bad=0
check() {   # check DIR FORBIDDEN-PREFIX...
  local dir=$1; shift
  [ -d "$dir" ] || { echo "missing layer directory $dir"; bad=1; return; }
  for up in "$@"; do
    hits=$(grep -rnE "^[[:space:]]*#[[:space:]]*include[[:space:]]+\"$up/" "$dir" \
             --include='*.cpp' --include='*.hpp' --include='*.h' --include='*.def' || true)
    if [ -n "$hits" ]; then
      echo "layer violation: $dir/ includes $up/:"
      echo "$hits"
      bad=1
    fi
  done
}

check common dataplane control p3d
check dataplane control p3d
check control p3d
# The program is on top: its main is there and nothing else defines one.
[ -f p3d/main.cpp ] || { echo "p3d/main.cpp missing: the program belongs on top"; bad=1; }
others=$(grep -rlE '^int main\(' common dataplane control --include='*.cpp' | grep -v '^control/p3ctl.cpp$' || true)
if [ -n "$others" ]; then echo "a main() below p3d/: $others"; bad=1; fi

# The control plane reaches the dataplane through its port only (and the dataplane's burst
# size, which the control thread takes messages off a ring by).
allowed='dataplane/control_port.hpp|dataplane/limits.hpp'
other=$(grep -rnoE '#include "dataplane/[^"]+"' control | grep -vE "\"($allowed)\"" || true)
if [ -n "$other" ]; then echo "control/ reaches past the dataplane's port:"; echo "$other"; bad=1; fi
echo "control/ -> dataplane/ includes:"
grep -rhoE '#include "dataplane/[^"]+"' control | sort | uniq -c
if [ "$bad" -ne 0 ]; then exit 1; fi
echo "layers: common < dataplane < control < p3d"
