"""Rebuild plots/templates/offline.html: DVC's plot page with vega, vega-lite and vega-embed inlined (no CDN).

    cd "$(mktemp -d)" && npm pack vega@5 vega-lite@5 vega-embed@6      # npm checks each tarball's registry integrity
    python /path/to/repo/plots/templates/build_offline.py "$PWD"

Takes build/<name>.min.js out of each tarball, drops the sourceMappingURL comment (the .map is not shipped) and
writes offline.html beside this script. The page keeps DVC's {plot_divs} and {refresh_tag} placeholders and
deliberately has no {scripts} placeholder: DVC fills that one with <script src="https://cdn.jsdelivr.net/...">.
docs/reporting.md explains how DVC is pointed at the template.
"""

from __future__ import annotations

import hashlib
import re
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIBS = (("vega", 5), ("vega-lite", 5), ("vega-embed", 6))   # vega 6 / vega-lite 6 are ESM-only: stay on 5 / 5 / 6
PLACEHOLDERS = ("{scripts}", "{plot_divs}", "{refresh_tag}")

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- EmoLoom offline DVC plots page (plots/templates/build_offline.py). Inlined from the npm registry:
{versions}
         BSD-3-Clause, University of Washington Interactive Data Lab: see LICENSE-vega.txt beside this template. -->
{scripts}
    <style>
        body {{ font-family: sans-serif; }}
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def minified(tgz: Path, name: str) -> tuple[str, str]:
    with tarfile.open(tgz) as tar:
        data = tar.extractfile(f"package/build/{name}.min.js").read().decode("utf-8")
    js = re.sub(r"\n?//# sourceMappingURL=\S+\s*$", "", data)
    for bad in ("</script", "<!--", "<script", *PLACEHOLDERS):
        if bad in (js.lower() if bad.startswith("<") else js):
            raise SystemExit(f"{tgz}: {bad!r} in {name}.min.js cannot be inlined safely")
    return js, hashlib.sha256(data.encode("utf-8")).hexdigest()


def main(src: str) -> None:
    scripts, versions = [], []
    for name, major in LIBS:
        found = sorted(Path(src).glob(f"{name}-{major}.*.tgz"))
        if len(found) != 1:
            raise SystemExit(f"need exactly one {name}-{major}.x.y.tgz in {src}, found {[f.name for f in found]}")
        version = found[0].name[len(name) + 1:-len(".tgz")]
        js, sha = minified(found[0], name)
        versions.append(f"         {name}@{version} build/{name}.min.js sha256 {sha}")
        scripts.append(f"    <script>/* {name}@{version} (BSD-3-Clause) */\n{js}\n    </script>")
    # str.format would trip over the braces of the JS: fill the two build-time slots by plain replacement
    page = PAGE.replace("{{", "\x00").replace("}}", "\x01")
    page = page.replace("{versions}", "\n".join(versions)).replace("{scripts}", "\n".join(scripts))
    page = page.replace("\x00", "{").replace("\x01", "}")
    out = HERE / "offline.html"
    out.write_text(page, encoding="utf-8")
    print(f"{out}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
