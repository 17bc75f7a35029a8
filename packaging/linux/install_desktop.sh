#!/usr/bin/env bash
# Installs TL Studio's menu entry, icons, AppStream metainfo and its .pt2/.onnx file associations for
# the current user (XDG data dirs, no root). `make install-desktop` runs it.
#   packaging/linux/install_desktop.sh /path/to/tl-studio     the command the menu entry runs
#   packaging/linux/install_desktop.sh --uninstall            removes what it installed
set -euo pipefail

id=org.tlstudio.TLStudio
here=$(cd "$(dirname "$0")" && pwd)
icons=$here/../../resources/icons
data=${XDG_DATA_HOME:-$HOME/.local/share}
sizes="16 24 32 48 64 128 256 512"

refresh() {  # each tool is optional: desktops without it rescan on their own
  command -v update-mime-database >/dev/null && update-mime-database "$data/mime"
  command -v update-desktop-database >/dev/null && update-desktop-database -q "$data/applications"
  command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t -f "$data/icons/hicolor" || true
}

if [[ ${1:-} == --uninstall ]]; then
  rm -f "$data/applications/$id.desktop" "$data/metainfo/$id.metainfo.xml" "$data/mime/packages/$id.xml" \
        "$data/icons/hicolor/scalable/apps/$id.svg"
  for size in $sizes; do rm -f "$data/icons/hicolor/${size}x${size}/apps/$id.png"; done
  refresh
  echo "Removed TL Studio's menu entry, icons and file associations from $data."
  exit 0
fi

command=${1:?usage: install_desktop.sh /path/to/tl-studio | --uninstall}
if [[ ! -x $command ]]; then
  echo "No tl-studio command at $command: build it first (make package, or make setup for the venv)." >&2
  exit 1
fi
command=$(cd "$(dirname "$command")" && pwd)/$(basename "$command")

install -Dm644 "$icons/tl-studio.svg" "$data/icons/hicolor/scalable/apps/$id.svg"
for size in $sizes; do
  install -Dm644 "$icons/tl-studio-$size.png" "$data/icons/hicolor/${size}x${size}/apps/$id.png"
done
install -Dm644 "$here/$id.mime.xml" "$data/mime/packages/$id.xml"
install -Dm644 "$here/$id.metainfo.xml" "$data/metainfo/$id.metainfo.xml"
# The menu entry runs this installation's command (a path with spaces is quoted, as the spec asks).
mkdir -p "$data/applications"
sed -e "s|^Exec=tl-studio |Exec=\"$command\" |" -e "s|^TryExec=tl-studio$|TryExec=$command|" \
  "$here/$id.desktop" > "$data/applications/$id.desktop"
refresh
echo "Installed TL Studio in the applications menu ($data/applications/$id.desktop), running $command;"
echo ".pt2 and .onnx files now offer \"Open with TL Studio\"."
