#!/usr/bin/env bash
# Builds p3's Debian binary package from the tree, without debhelper, for CI and trial
# installs: meson install (--prefix=/usr --sysconfdir=/etc) into a staging root, control file
# and maintainer scripts from debian/, then dpkg-deb. `dpkg-buildpackage -b` builds the same
# package for a release (debian/rules); both install through dist/meson.build.
#
#   scripts/package.sh [-B BUILDDIR] [-o OUTDIR]
#
# -B: reuse BUILDDIR (its install prefix is set to /usr, sysconfdir to /etc; nothing is
#     recompiled, only p3d and p3ctl relinked if out of date). Default: build-deb/, configured
#     on first use (release build; ccache makes it quick).
# -o: where the .deb goes (default: the tree's top). The last line printed is its path.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-deb
out=$root
while getopts "B:o:h" opt; do
  case $opt in
    B) build=$(cd "$OPTARG" && pwd) ;;
    o) out=$OPTARG ;;
    *) sed -n '2,14p' "$0"; exit 2 ;;
  esac
done
for tool in meson ninja dpkg-deb dpkg-gencontrol; do
  command -v "$tool" >/dev/null || { echo "package.sh: $tool is missing (apt-get install dpkg-dev meson ninja-build)" >&2; exit 2; }
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Configure for /usr; an existing build dir keeps its objects (install paths do not change a
# compile command).
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$root" --prefix=/usr --sysconfdir=/etc --localstatedir=/var --buildtype=release >/dev/null
else
  opts=$(meson introspect --buildoptions "$build" | python3 -c '
import json, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
print(o["prefix"], o["sysconfdir"])')
  if [ "$opts" != "/usr /etc" ]; then
    meson configure "$build" -Dprefix=/usr -Dsysconfdir=/etc -Dlocalstatedir=/var >/dev/null
  fi
fi
ninja -C "$build" -j2 p3d/p3d control/p3ctl >/dev/null

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/root
# Only p3d and p3ctl are installed targets, so --no-rebuild skips building tests and perf.
meson install -C "$build" --no-rebuild --strip --destdir "$pkg" >/dev/null
gzip -9n "$pkg"/usr/share/man/man*/*
install -d -m 0755 "$pkg/usr/share/doc/p3"
install -m 0644 "$root/debian/copyright" "$pkg/usr/share/doc/p3/copyright"
gzip -9nc "$root/debian/changelog" >"$pkg/usr/share/doc/p3/changelog.Debian.gz"

# Control file: debian/control's stanza, the version from debian/changelog (plus the commit
# for a tree that is not the release), Depends from the binaries' shared libraries.
install -d -m 0755 "$pkg/DEBIAN"
cd "$root"
version=$(dpkg-parsechangelog -S Version)
if commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null); then
  version="$version+git$(git -C "$root" log -1 --format=%cd --date=format:%Y%m%d).$commit"
fi
substvars=$stage/substvars
: >"$substvars"
if command -v dpkg-shlibdeps >/dev/null; then
  dpkg-shlibdeps -T"$substvars" -e"$pkg/usr/sbin/p3d" -e"$pkg/usr/bin/p3ctl" 2>"$stage/shlibdeps.err" ||
    { cat "$stage/shlibdeps.err" >&2; exit 1; }
fi
echo "misc:Depends=" >>"$substvars"
dpkg-gencontrol -pp3 -v"$version" -T"$substvars" -P"$pkg" -c"$root/debian/control" -l"$root/debian/changelog" \
  -f"$stage/files" 2>/dev/null
# Every file under /etc is a configuration file: an upgrade keeps the administrator's edits.
(cd "$pkg" && find etc -type f | sort | sed 's|^|/|') >"$pkg/DEBIAN/conffiles"
# Maintainer scripts: debian/'s, with debhelper's part replaced by what dh_installsystemd
# --no-enable --no-start adds (the units known to systemd, none started).
for script in postinst postrm; do
  sed '/^#DEBHELPER#$/c\
if [ -d /run/systemd/system ]; then systemctl --system daemon-reload >/dev/null || true; fi' \
    "$root/debian/p3.$script" >"$pkg/DEBIAN/$script"
  chmod 0755 "$pkg/DEBIAN/$script"
done

deb=$out/p3_${version}_$(dpkg --print-architecture).deb
dpkg-deb --root-owner-group -Zxz -z1 --build "$pkg" "$deb" >/dev/null
echo "$deb"
