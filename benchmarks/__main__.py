"""``python -m benchmarks run [--quick] [--set images|audio|all]``: measure, write
benchmarks/results/*.json and *.md, and the README tables; ``table`` rewrites the markdown from
the saved JSON; ``fetch-audio`` downloads the audio evaluation sets."""

import argparse
import json
import sys

from . import audio, images


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("action", choices=["run", "table", "fetch-audio"], help="run: measure and write results; "
                   "table: rewrite the markdown from the saved JSON; fetch-audio: download the audio evaluation sets")
    p.add_argument("--quick", action="store_true", help="a few small inputs only: minutes on 2 cores")
    p.add_argument("--set", choices=["images", "audio", "all"], default="all", dest="which")
    args = p.parse_args()
    if args.action == "fetch-audio":
        audio.fetch()
        return
    images.RESULTS.mkdir(exist_ok=True)
    command = "python -m benchmarks " + " ".join(sys.argv[1:])
    for which in (["images", "audio"] if args.which == "all" else [args.which]):
        name = which + ("-quick" if args.quick else "")
        path = images.RESULTS / f"{name}.json"
        if args.action == "run":
            if which == "images":
                partial = images.RESULTS / f"{name}.partial.json"
                results = images.run(args.quick, command, partial)
                partial.unlink(missing_ok=True)
            else:
                results = audio.run(args.quick, command)
            path.write_text(json.dumps(results, indent=1))
        results = json.loads(path.read_text())
        table = (images if which == "images" else audio).summarize(results)
        (images.RESULTS / f"{name}.md").write_text(table)
        if not args.quick:
            update_readme(table, which)
        print(table)


def update_readme(table: str, which: str) -> None:
    """Replace README.md's text between the benchmark markers with the fresh table."""
    readme = images.RESULTS.parents[1] / "README.md"
    text = readme.read_text()
    start, end = f"<!-- benchmark:{which} -->\n", f"<!-- /benchmark:{which} -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        readme.write_text(head + start + table + rest[rest.index(end):])


main()
