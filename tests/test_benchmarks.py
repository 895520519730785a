"""The benchmark scripts import (nothing else imports them, so a change to the package that
breaks one would otherwise go unseen until a long run starts), and the tables in README.md are
the ones their summaries make from the stored results (benchmarks/results/*.json)."""

import json
from pathlib import Path

import pytest

from benchmarks import audio, images, models, resolutions, roundtrip, small

ROOT = Path(__file__).resolve().parents[1]
SETS = {"images": images, "small": small, "models": models, "resolutions": resolutions, "audio": audio,
        "roundtrip": roundtrip}


@pytest.mark.parametrize("which", sorted(SETS))
def test_readme_tables_come_from_the_stored_results(which):
    results = ROOT / "benchmarks" / "results" / f"{which}.json"
    table = SETS[which].summarize(json.loads(results.read_text()))
    readme = (ROOT / "README.md").read_text()
    start, end = f"<!-- benchmark:{which} -->\n", f"<!-- /benchmark:{which} -->"
    assert readme.split(start, 1)[1].split(end, 1)[0] == table
    assert (ROOT / "benchmarks" / "results" / f"{which}.md").read_text() == table
