"""Read tracing for the workflow's one-way data flow: with `DIFFREPRO_READ_TRACE=<folder>` in the environment, a
`diffrepro` process records every file it opens for reading and every folder it lists (Python audit events `open`,
`os.listdir`, `os.scandir`, `glob.glob`) and writes them, with its command line, to `<folder>/<pid>.json` at exit.
The tests run the smoke workflow this way and check each job's reads against its rule's declared inputs; nothing
reads the variable otherwise. (Files read by native code, e.g. polars' Parquet reader, are not seen; their paths
come from the command line.)"""
from __future__ import annotations

import atexit
import json
import os
import sys

ENV = "DIFFREPRO_READ_TRACE"
_LISTING_EVENTS = ("os.listdir", "os.scandir", "glob.glob")


def _is_read(mode, flags) -> bool:
    """open(..., 'r…') or os.open without O_CREAT for reading; creating a file (temporary files, probes) is not."""
    if isinstance(mode, str):
        return "r" in mode
    return isinstance(flags, int) and not flags & os.O_CREAT and flags & os.O_ACCMODE in (os.O_RDONLY, os.O_RDWR)


def install(folder: str) -> None:
    """Start recording (once per process); the record is written at interpreter exit."""
    reads: set[str] = set()
    listed: set[str] = set()

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            if isinstance(path, (str, os.PathLike)) and _is_read(mode, flags):
                path = os.path.abspath(os.fspath(path))
                (listed if os.path.isdir(path) else reads).add(path)  # a folder opened to fsync it is no read
        elif event in _LISTING_EVENTS and args and isinstance(args[0], (str, os.PathLike)):
            listed.add(os.path.abspath(os.fspath(args[0])))

    def write() -> None:
        os.makedirs(folder, exist_ok=True)
        record = {"argv": sys.argv, "cwd": os.getcwd(), "reads": sorted(reads), "listed": sorted(listed)}
        with open(os.path.join(folder, f"{os.getpid()}.json"), "w") as f:
            json.dump(record, f)

    sys.addaudithook(hook)
    atexit.register(write)


def install_from_environment() -> None:
    folder = os.environ.get(ENV)
    if folder:
        install(folder)
