"""Prints where the browser tests left their screenshots."""
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def pytest_terminal_summary(terminalreporter):
    art = pathlib.Path(os.environ.get("KINDLING_ARTIFACTS") or ROOT / "target" / "browser-artifacts")
    shots = sorted(art.glob("*.png")) if art.is_dir() else []
    if shots:
        terminalreporter.section("screenshots")
        for s in shots:
            terminalreporter.write_line(str(s))
