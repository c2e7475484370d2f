"""The page template for ``dvc plots show`` / ``dvc plots diff`` that works with no network.

DVC's own page loads Vega, Vega-Lite and Vega-Embed from a CDN, so offline it stays blank. This
template carries the three libraries inline (bundled by the ``vl-convert-python`` package, pinned in
requirements.txt) and draws every chart as SVG. ``.dvc/config`` points ``plots.html_template`` at
it; ``make setup`` writes it:

    python -m imgclf.reporting.plots_page .dvc/plots/offline.html
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imgclf.plumbing.files import atomic_file

logger = logging.getLogger(__name__)

# DVC writes Vega-Lite 5 specifications; this is the newest 5.x that vl-convert bundles.
VEGA_LITE_VERSION = "5.21"

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC plots</title>
    <script>
/* Vega, Vega-Lite and Vega-Embed (vl-convert-python's bundle, Vega-Lite %(vega_lite)s) */
%(bundle)s
    </script>
    <script>
/* DVC calls vegaEmbed(element, spec) once per chart: draw as SVG, and show an error instead of nothing. */
(function () {
    const embed = window.vegaEmbed;
    window.vegaEmbed = function (element, spec, options) {
        return embed(element, spec, Object.assign({renderer: "svg"}, options)).catch(function (error) {
            const message = document.createElement("pre");
            message.className = "plot-error";
            message.textContent = "This chart could not be drawn: " + error;
            document.querySelector(element).appendChild(message);
        });
    };
})();
    </script>
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
        img { max-width: 100%%; }
        .plot-error { color: firebrick; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def offline_template() -> str:
    """The HTML template, with the JavaScript libraries inline."""
    import vl_convert

    # The stub marks `snippet` required; at run time it defaults to the snippet that sets the globals.
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)  # type: ignore[call-arg]
    if "</script" in bundle or "{plot_divs}" in bundle:  # would end the script tag or confuse DVC
        raise ValueError("the Vega bundle cannot be inlined into an HTML script element")
    return PAGE % {"bundle": bundle, "vega_lite": VEGA_LITE_VERSION}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="where to write the template (.dvc/plots/offline.html)")
    args = parser.parse_args(argv)
    with atomic_file(args.output) as handle:
        handle.write(offline_template())
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger.info("wrote %s (%d kB)", args.output, args.output.stat().st_size // 1000)


if __name__ == "__main__":
    main()
