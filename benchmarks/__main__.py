"""``python -m benchmarks run [--quick]``: measure, write benchmarks/results/*.json and images.md."""

import argparse
import json
import sys

from . import images


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("action", choices=["run", "table"], help="run: measure and write results; "
                   "table: rewrite the markdown from the saved JSON")
    p.add_argument("--quick", action="store_true", help="small crops only: a few minutes on 2 cores")
    args = p.parse_args()
    images.RESULTS.mkdir(exist_ok=True)
    name = "images-quick" if args.quick else "images"
    path = images.RESULTS / f"{name}.json"
    if args.action == "run":
        partial = images.RESULTS / f"{name}.partial.json"
        results = images.run(args.quick, "python -m benchmarks " + " ".join(sys.argv[1:]), partial)
        path.write_text(json.dumps(results, indent=1))
        partial.unlink(missing_ok=True)
    results = json.loads(path.read_text())
    table = images.summarize(results)
    (images.RESULTS / f"{name}.md").write_text(table)
    if not args.quick:
        update_readme(table)
    print(table)


def update_readme(table: str) -> None:
    """Replace README.md's text between the benchmark markers with the fresh table."""
    readme = images.RESULTS.parents[1] / "README.md"
    text = readme.read_text()
    start, end = "<!-- benchmark:images -->\n", "<!-- /benchmark:images -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        readme.write_text(head + start + table + rest[rest.index(end):])


main()
