"""Benchmark plumbing: ratio table of each pyhash kernel against its anchor measured in the same run.

`pytest benchmarks/ --benchmark-only` prints the table; add `--write-performance` to also write it
into docs/performance.md (between the markers of the matching section).
"""

import datetime
import os
import platform
import sys
from pathlib import Path

# OpenMP reads this when its library loads (with torch, and with faiss), so it is set before
# either is imported. Spinning idle threads (the default) slowed the other library's timed
# calls by up to 25 % on the 2-core VM (docs/performance.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # shared input builders

ROWS = {}  # (section, case) -> {"pyhash": seconds, "<anchor>": seconds, "work": units, "unit": str}
DOCS = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def pytest_addoption(parser):
    parser.addoption("--write-performance", action="store_true", help="write the ratio tables to docs/performance.md")


def record(section: str, case: str, impl: str, seconds: float, work: float = 0.0, unit: str = "") -> None:
    """One timing (seconds) of impl; work/unit turn it into a rate (e.g. distances per second)."""
    row = ROWS.setdefault((section, case), {})
    row[impl] = seconds
    if work:
        row["work"], row["unit"] = work, unit


def record_memory(section: str, case: str, impl: str, nbytes: float) -> None:
    """One peak-memory figure of impl, shown in MiB; the ratio column compares memory."""
    row = ROWS.setdefault((section, case), {})
    row[impl] = nbytes
    row["unit"] = "bytes"


def median_seconds(benchmark) -> float:
    return benchmark.stats.stats.median


def _table(section: str) -> str:
    rows = [(case, r) for (s, case), r in ROWS.items() if s == section]
    anchors = sorted({k for _, r in rows for k in r if k not in ("pyhash", "work", "unit")})
    gain = "ratio (anchor / pyhash)" if any(r.get("unit") == "bytes" for _, r in rows) else "speed-up"
    header = ["case", "pyhash", *anchors, *(f"{gain} vs {a}" for a in anchors)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for case, r in rows:
        def fmt(impl):
            if impl not in r:
                return "-"
            s = r[impl]
            if r.get("unit") == "bytes":
                return f"{s / 2**20:.1f} MiB"
            rate = f" ({r['work'] / s / 1e9:.2f} G{r['unit']}/s)" if r.get("work") else ""
            return f"{s * 1e3:.1f} ms{rate}"
        ratios = [f"{r[a] / r['pyhash']:.1f}x" if a in r and r.get("pyhash") else "-" for a in anchors]
        lines.append("| " + " | ".join([case, fmt("pyhash"), *(fmt(a) for a in anchors), *ratios]) + " |")
    return "\n".join(lines)


def _cpu_name() -> str:
    """The CPU's model name, family and model from /proc/cpuinfo where there is one, else the
    architecture. Virtual machines often name only the vendor ("AMD EPYC"); the family and model
    tell the generations apart (AMD family 25 is Zen 3/4, 26 is Zen 5)."""
    try:
        fields = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        if "model name" in fields:
            return f"{fields['model name']} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine() -> str:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    import pyhash

    return (
        f"{datetime.date.today().isoformat()}, {_cpu_name()}, {os.cpu_count()} cores, "
        f"{gpu}, torch {torch.__version__}, pyhash CPU ISA {pyhash._C.cpu_isa()}"
    )


def pytest_sessionfinish(session, exitstatus):
    if not ROWS:
        return
    sections = sorted({s for s, _ in ROWS})
    text = "\n\n".join(f"### {s}\n\nMeasured {_machine()}.\n\n{_table(s)}" for s in sections)
    print("\n\n" + text + "\n")
    if session.config.getoption("--write-performance"):
        write_sections(sections)


def write_sections(sections) -> None:
    """Replace (or append) each section's block between <!-- bench:NAME --> markers."""
    doc = DOCS.read_text() if DOCS.exists() else "# Performance\n"
    for s in sections:
        begin, end = f"<!-- bench:{s} -->", f"<!-- /bench:{s} -->"
        block = f"{begin}\n### {s}\n\nMeasured {_machine()}.\n\n{_table(s)}\n{end}"
        if begin in doc and end in doc:
            doc = doc[: doc.index(begin)] + block + doc[doc.index(end) + len(end) :]
        else:
            doc = doc.rstrip() + "\n\n" + block + "\n"
    tmp = DOCS.with_suffix(".tmp")
    tmp.write_text(doc)
    tmp.replace(DOCS)


@pytest.fixture
def threads():
    """Restores torch's thread count after a benchmark changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
