"""``python -m benchmarks run [--quick] [--update] [--set images|small|models|resolutions|audio|roundtrip|all]``: measure, write
benchmarks/results/*.json and *.md, the plots and the README sections; ``table`` rewrites the
markdown, plots and README from the saved JSON; ``fetch-data`` downloads the evaluation sets that
are not in ../shared/data (audio, Fashion-MNIST)."""

import argparse
import json
import shutil
import sys

from . import audio, images, models, report, resolutions, roundtrip, small

MODULES = {"images": images, "small": small, "models": models, "resolutions": resolutions, "audio": audio,
           "roundtrip": roundtrip}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("action", choices=["run", "table", "fetch-data", "fetch-audio"],
                   help="run: measure and write results; table: rewrite the markdown, plots and README from the "
                        "saved JSON; fetch-data: download the evaluation sets (fetch-audio: the audio ones only)")
    p.add_argument("--quick", action="store_true", help="a few small inputs only: minutes on 2 cores")
    p.add_argument("--update", action="store_true",
                   help="keep the saved measurements and add only what is missing (new codecs, new sets)")
    p.add_argument("--recheck", action="store_true",
                   help="with --update --set images: encode every saved row's image again and measure again "
                        "the rows the encoder now writes otherwise (after a change to its choices)")
    p.add_argument("--set", choices=[*MODULES, "all"], default="all", dest="which")
    args = p.parse_args()
    if args.recheck and not (args.update and args.which == "images"):
        p.error("--recheck goes with --update --set images")
    if args.action in ("fetch-data", "fetch-audio"):
        audio.fetch()
        if args.action == "fetch-data":
            small.fetch()
        return
    images.RESULTS.mkdir(exist_ok=True)
    command = "python -m benchmarks " + " ".join(sys.argv[1:])
    suffix = "-quick" if args.quick else ""
    for which in (list(MODULES) if args.which == "all" else [args.which]):
        path = images.RESULTS / f"{which}{suffix}.json"
        if args.action == "run" and which == "resolutions" and args.which == "all" and not resolutions.ready():
            print("skipping the resolutions benchmark: its comparison models are not trained "
                  "(see benchmarks/resolutions.py)")
        elif args.action == "run":
            results = measure(which, args.quick, args.update, command, path, args.recheck)
            path.write_text(json.dumps(results, indent=1))
        if not path.exists():
            continue
        table = MODULES[which].summarize(json.loads(path.read_text()))
        (images.RESULTS / f"{which}{suffix}.md").write_text(table)
        if not args.quick:
            update_readme(table, which)
        print(table)
    if not args.quick:
        update_readme(report.build(images.RESULTS), "report")


def measure(which: str, quick: bool, update: bool, command: str, path, recheck: bool = False) -> dict:
    """Run one benchmark; all but audio resume from their partial file after an interruption."""
    partial = images.RESULTS / f"{path.stem}.partial.json"
    if which == "audio":
        if update and path.exists():
            return audio.update(json.loads(path.read_text()), quick, command)
        return audio.run(quick, command)
    if update and path.exists() and not partial.exists():
        shutil.copy(path, partial)  # resume from the saved results: only missing rows are measured
    results = MODULES[which].run(quick, command, partial, **({"recheck": True} if recheck else {}))
    if update:
        results.setdefault("updates", []).append({"command": command, "date": images.today()})
    partial.unlink(missing_ok=True)
    return results


def update_readme(table: str, which: str) -> None:
    """Replace README.md's text between the benchmark markers with the fresh table."""
    readme = images.RESULTS.parents[1] / "README.md"
    text = readme.read_text()
    start, end = f"<!-- benchmark:{which} -->\n", f"<!-- /benchmark:{which} -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        readme.write_text(head + start + table + rest[rest.index(end):])


main()
