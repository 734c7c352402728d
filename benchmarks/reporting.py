"""What every benchmark shares: the results file, machine facts, and publishing a section."""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

RESULTS_PATH = Path(__file__).with_name("RESULTS.md")
RESULTS_TITLE = (
    "# Benchmark results\n\n"
    "Every figure comes from a script in this folder, run on the machine named in its section.\n"
)


@dataclass(frozen=True)
class FileSystem:
    """Where a folder lives, from /proc/mounts."""

    mount_point: str
    device: str
    fs_type: str
    options: str

    def describe(self) -> str:
        return f"{self.fs_type} on {self.device} mounted at {self.mount_point} ({self.options})"


def file_system_of(path: Path) -> FileSystem:
    """The mount holding ``path`` (longest matching mount point)."""
    resolved = str(path.resolve())
    best = FileSystem("/", "?", "?", "?")
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best
    for line in mounts:
        device, mount_point, fs_type, options, *_ = line.split()
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best.mount_point):
            best = FileSystem(mount_point, device, fs_type, options)
    return best


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else the platform's processor name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def append_section(results_path: Path, section: str) -> None:
    """Append ``section`` to ``results_path``, creating the file with its title if needed."""
    if results_path.exists():
        with results_path.open("a", encoding="utf-8") as handle:
            handle.write("\n" + section)
    else:
        results_path.write_text(RESULTS_TITLE + "\n" + section, encoding="utf-8")


def publish(section: str, results_path: Path, append: bool) -> int:
    """Print ``section`` and, when ``append``, add it to the results file; returns exit code 0."""
    print(section)
    if append:
        append_section(results_path, section)
    return 0


def add_run_options(parser: argparse.ArgumentParser, quick_help: str) -> None:
    """The options every benchmark takes: ``--quick``, ``--no-append``, ``--results``."""
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    parser.add_argument("--results", metavar="PATH", type=Path, default=RESULTS_PATH,
                        help="Markdown file to append to (default benchmarks/RESULTS.md)")


def header_lines(heading: str, command: str, load_before: float) -> list[str]:
    """A section's heading, command, date (UTC) and machine with the load around the run."""
    return [
        heading,
        "",
        f"- Command: `{command}`",
        f"- Date: {time.strftime('%a %b %e %H:%M:%S UTC %Y', time.gmtime())}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
        f"1-min load average {load_before:.2f} before the run, {os.getloadavg()[0]:.2f} after",
    ]
