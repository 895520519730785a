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
        results = images.run(args.quick, "python -m benchmarks " + " ".join(sys.argv[1:]))
        path.write_text(json.dumps(results, indent=1))
    results = json.loads(path.read_text())
    (images.RESULTS / f"{name}.md").write_text(images.summarize(results))
    print(images.summarize(results))


main()
