"""Handing over the key `tollway serve` creates on an empty store (issue 17 item 13).

The secret exists nowhere else (the store keeps only its hash), so it must reach the operator,
but never a log: `tollway serve` under systemd, Docker or a CI runner writes its output to a
journal that many people can read. So:

* attached to a terminal (`make run`), it is printed there, once, as before;
* otherwise it is written to `server.first_key_file` (default `./tollway-first-key`), created
  with mode 0600 (owner read/write only; an existing file is truncated and re-moded, a symlink
  is refused), and only that file's location is printed. The operator reads it, stores the key,
  and deletes the file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rich.console import Console


def hand_over(secret: str, path: Path, console: Console) -> None:
    """Show SECRET on the terminal, or put it in PATH (mode 0600) and print only where."""
    if sys.stdout.isatty():
        console.print("[bold]First start: created API key 'default'. It is shown once; keep it:[/bold]")
        console.print(f"  {secret}", highlight=False, soft_wrap=True)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a file that existed keeps its old mode otherwise
        os.write(fd, (secret + "\n").encode())
    finally:
        os.close(fd)
    console.print(f"First start: created API key 'default'; its secret is in {path.resolve()} (mode 0600). "
                  "Store it, then delete that file.", highlight=False, soft_wrap=True)
