"""The packaging files agree with the source tree: what the wheel lists, what the desktop files
declare, the icons they name. (Building the wheel and the app is packaging/*_smoke_test.sh's job.)"""

import configparser
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINUX = ROOT / "packaging" / "linux"
APP_ID = "org.tlstudio.TLStudio"


def test_the_wheel_lists_every_package_of_the_source_tree():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "tl_studio").rglob("__init__.py")}
    assert on_disk <= listed, f"not in pyproject.toml's packages: {sorted(on_disk - listed)}"
    resource_dirs = {"tl_studio.resources" + "".join("." + part for part in d.relative_to(ROOT / "resources").parts)
                     for d in [ROOT / "resources", *(p for p in (ROOT / "resources").rglob("*") if p.is_dir())]
                     if "__pycache__" not in d.parts}
    assert resource_dirs <= listed, f"resource folders not packaged: {sorted(resource_dirs - listed)}"


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(LINUX / f"{APP_ID}.desktop")
    return parser["Desktop Entry"]


def test_desktop_entry_mime_types_and_appstream_agree():
    ns = {"m": "http://www.freedesktop.org/standards/shared-mime-info"}
    defined = {t.get("type") for t in ET.parse(LINUX / f"{APP_ID}.mime.xml").getroot().findall("m:mime-type", ns)}
    globs = {g.get("pattern") for g in ET.parse(LINUX / f"{APP_ID}.mime.xml").getroot().iter(f"{{{ns['m']}}}glob")}
    assert globs == {"*.pt2", "*.onnx"}
    entry = _desktop_entry()
    assert set(filter(None, entry["MimeType"].split(";"))) == defined
    assert entry["Exec"] == "tl-studio %f" and entry["Icon"] == APP_ID
    metainfo = ET.parse(LINUX / f"{APP_ID}.metainfo.xml").getroot()
    assert metainfo.findtext("id") == APP_ID
    assert metainfo.findtext("launchable") == f"{APP_ID}.desktop"
    assert {m.text for m in metainfo.iter("mediatype")} == defined


def test_every_icon_size_the_installer_copies_exists_at_its_size():
    from PIL import Image

    script = (LINUX / "install_desktop.sh").read_text()
    sizes = next(line for line in script.splitlines() if line.startswith("sizes=")).split('"')[1].split()
    assert sizes == ["16", "24", "32", "48", "64", "128", "256", "512"]
    icons = ROOT / "resources" / "icons"
    assert (icons / "tl-studio.svg").is_file()
    for size in sizes:
        with Image.open(icons / f"tl-studio-{size}.png") as image:
            assert image.size == (int(size), int(size))
