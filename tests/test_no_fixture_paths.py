"""Library code never reads the developers' test data (``<repo>/../shared/data``): after a plain install that
folder does not exist, so every default (embedded corpus, probes) must come from installed packages or simulators."""

from __future__ import annotations

import re

from tests.conftest import REPO

PATTERN = re.compile(r"""shared/data|["']shared["']|parents\[\d\]\.parent\s*/""")


def test_library_code_names_no_test_data_path():
    hits = []
    for package in ("modalities", "models", "pretrain"):
        for f in sorted((REPO / package).rglob("*")):
            if f.suffix in (".py", ".yaml", ".yml") and f.is_file():
                for i, line in enumerate(f.read_text().splitlines(), 1):
                    if PATTERN.search(line):
                        hits.append(f"{f.relative_to(REPO)}:{i}: {line.strip()}")
    assert not hits, "library code names the shared test data:\n" + "\n".join(hits)
