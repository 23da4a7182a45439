"""Run ``python -m pretrain`` with a fault injected, for tests of the failure paths:

    python -m tests.faults kill_after_step:12 ecg --max-steps 30 ...     # dies (as SIGKILL would) after step 12
    python -m tests.faults crash_in_checkpoint:8 ecg ...                 # dies halfway through checkpoint 8's write

The fault goes through the loop's test hooks (:data:`pretrain.checkpoint.HOOKS`); nothing in the library reads it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def install(spec: str) -> None:
    from pretrain.checkpoint import HOOKS

    kind, _, at = spec.partition(":")
    step = int(at)
    if kind == "kill_after_step":
        HOOKS["after_step"].append(lambda done: os._exit(137) if done == step else None)
    elif kind == "crash_in_checkpoint":
        def half_written(tmp: Path, done: int) -> None:
            if done == step:  # a half-written file, then the process dies before the rename
                with open(tmp, "r+b") as f:
                    f.truncate(max(1, os.path.getsize(tmp) // 2))
                os._exit(137)
        HOOKS["before_rename"].append(half_written)
    else:
        raise SystemExit(f"tests.faults: unknown fault {spec!r} (kill_after_step:N or crash_in_checkpoint:N)")


if __name__ == "__main__":
    install(sys.argv[1])
    from pretrain.cli import main

    sys.exit(main(sys.argv[2:]))
