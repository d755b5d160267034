"""Benchmark: ``toque drift`` against Evidently 0.7's ``DataDriftPreset``, side by side.

Writes seeded synthetic data (20 numeric and 5 categorical columns; in the current, 4 numeric
columns shifted by +0.5 sigma, 3 by +0.15 sigma and 3 by +0.05 sigma — either side of the 0.1
threshold —, 3 categoricals redistributed, one of them to a Jensen-Shannon distance of about
0.15; the rest drawn like the reference) as parquet, then runs each tool on the same files in
its own process: Toque in
this virtualenv (``python bench/drift.py _toque ...``), Evidently in ``.venv-evidently``
(``bench/drift_evidently.py``), so each one's peak RSS is its own. Cases: reference and
current of 100,000 and 1,000,000 rows; then 10,000,000 current rows streamed through the
1,000,000-row profile in chunks of 500,000 (``count`` + ``CurrentCounts.add``), against
Evidently on the same rows under an address-space limit and a timeout. Data generation is
never timed. Writes a Markdown report to ``--out``. Run by ``make bench-drift``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parents[1]
GiB = 1024**3
REFERENCE, CURRENT = 0, 1  # seed parts: which side a chunk belongs to

# Numeric column i draws from FAMILIES[i % 5]; a SHIFTS column moves by that many of the
# family's standard deviations in the current, so its normalised Wasserstein distance is the
# shift. 0.05 and 0.15 sit either side of the 0.1 threshold: there the bucketed estimate must
# be close to the exact one for both tools to agree.
FAMILIES = ("normal", "lognormal", "uniform", "exponential", "gamma")
NUMERIC = [f"num_{i:02d}" for i in range(20)]
SHIFTS = {
    "num_00": 0.5,
    "num_01": 0.05,
    "num_03": 0.15,
    "num_06": 0.5,
    "num_07": 0.05,
    "num_09": 0.15,
    "num_10": 0.05,
    "num_12": 0.5,
    "num_15": 0.15,
    "num_18": 0.5,
}
THRESHOLD = 0.1  # both tools' default for normalised Wasserstein and Jensen-Shannon


def _zipf(n: int, power: float) -> list[float]:
    weights = 1 / np.arange(1, n + 1) ** power
    return list(weights / weights.sum())


def _reversed_head(p: list[float], head: int) -> list[float]:
    return p[:head][::-1] + p[head:]


def _grown(p: list[float], index: int, share: float) -> list[float]:
    """``p`` with ``share`` of all rows moved to value ``index`` (proportionally from all)."""
    return [(1 - share) * v + (share if i == index else 0.0) for i, v in enumerate(p)]


@dataclasses.dataclass(frozen=True)
class Categorical:
    name: str
    values: list[str]
    reference: list[float]
    current: list[float] | None = None  # None: drawn like the reference
    change: str = "-"  # what the current does, for the report


CATEGORICALS = [
    # Jensen-Shannon distance of the changes: about 0.2, 0.15 and 0.33 (threshold 0.1).
    Categorical("cat_0", ["low", "mid", "high"], [0.5, 0.3, 0.2], [0.25, 0.3, 0.45], "JS ~0.21"),
    Categorical("cat_1", ["no", "yes"], [0.7, 0.3]),
    Categorical(
        "cat_2",
        [f"region-{i}" for i in range(8)],
        _zipf(8, 0.3),
        _grown(_zipf(8, 0.3), 7, 0.177),
        "JS ~0.15",
    ),
    Categorical(
        "cat_3",
        [f"sku-{i:02d}" for i in range(20)],
        _zipf(20, 1.0),
        _reversed_head(_zipf(20, 1.0), 6),
        "JS ~0.33",
    ),
    Categorical("cat_4", [f"city-{i:02d}" for i in range(40)], _zipf(40, 0.5)),
]
# Columns that drift by design: a shift or a change over the threshold.
DESIGNED = sorted(
    {name for name, shift in SHIFTS.items() if shift >= THRESHOLD}
    | {c.name for c in CATEGORICALS if c.current is not None}
)
UNCHANGED = (
    len(NUMERIC)
    + len(CATEGORICALS)
    - len(SHIFTS)
    - sum(c.current is not None for c in CATEGORICALS)
)
CHANGES = {
    **{name: f"+{shift:g} sigma" for name, shift in SHIFTS.items()},
    **{c.name: c.change for c in CATEGORICALS},
}


def numeric(rng: np.random.Generator, index: int, rows: int, shift: float) -> np.ndarray:
    family = FAMILIES[index % len(FAMILIES)]
    if family == "normal":
        values, std = rng.normal(10.0 * index, 1.0 + index, rows), 1.0 + index
    elif family == "lognormal":
        sigma = 0.5
        values = rng.lognormal(0.0, sigma, rows)
        std = float(np.sqrt((np.exp(sigma**2) - 1) * np.exp(sigma**2)))
    elif family == "uniform":
        values, std = rng.uniform(0.0, 100.0, rows), 100.0 / np.sqrt(12.0)
    elif family == "exponential":
        values, std = rng.exponential(2.0, rows), 2.0
    else:
        values, std = rng.gamma(2.0, 3.0, rows), float(np.sqrt(2.0) * 3.0)
    return values + shift * std


def chunk(seed: int, side: int, rows: int, index: int, size: int) -> pa.Table:
    """Rows ``index * size ...`` of a dataset of ``rows`` rows: the same seed, the same rows."""
    rng = np.random.default_rng([seed, side, rows, index])
    drifted = side == CURRENT
    data: dict[str, pa.Array] = {
        name: pa.array(numeric(rng, i, size, SHIFTS.get(name, 0.0) if drifted else 0.0))
        for i, name in enumerate(NUMERIC)
    }
    for cat in CATEGORICALS:
        p = cat.current if drifted and cat.current is not None else cat.reference
        codes = rng.choice(len(cat.values), size=size, p=p).astype(np.int32)
        dictionary = pa.DictionaryArray.from_arrays(codes, pa.array(cat.values))
        data[cat.name] = dictionary.cast(pa.string())
    return pa.table(data)


def chunks(seed: int, side: int, rows: int, size: int) -> Any:
    for index, start in enumerate(range(0, rows, size)):
        yield chunk(seed, side, rows, index, min(size, rows - start))


def write(path: pathlib.Path, seed: int, side: int, rows: int, size: int) -> pathlib.Path:
    writer: pq.ParquetWriter | None = None
    for table in chunks(seed, side, rows, size):
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return path


def status_kib(field: str) -> int:
    # VmHWM is per address space and starts afresh at exec, unlike ru_maxrss, which keeps
    # the parent's high-water mark across fork + exec.
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def feature_results(report: Any) -> dict[str, dict[str, Any]]:
    return {
        f.name: {
            "kind": f.kind,
            "method": f.method,
            "threshold": f.threshold,
            "score": f.p_value if f.method in ("ks", "chi2", "ztest") else f.score,
            "drifted": f.drifted,
            "verdict": f.verdict,
        }
        for f in report.features
    }


def toque_child(args: argparse.Namespace) -> dict[str, Any]:
    """The Toque side of one case, in its own process: read, profile, count, check."""
    import pandas as pd

    started = time.perf_counter()
    reference = pd.read_parquet(args.reference)
    current = pd.read_parquet(args.current)
    read_s = time.perf_counter() - started
    loaded_kib = status_kib("VmRSS")

    from toque.drift import check, profile, types
    from toque.drift import current as counting

    started = time.perf_counter()
    built = profile.build_profile(reference)
    profile_s = time.perf_counter() - started
    started = time.perf_counter()
    counts = counting.count(built, current)
    count_s = time.perf_counter() - started
    started = time.perf_counter()
    report = check.check(built, counts, types.Rules())
    check_s = time.perf_counter() - started
    document = profile.to_json(built)
    if args.profile_out:
        pathlib.Path(args.profile_out).write_bytes(document)
    return {
        "profile_bytes": len(document),
        "chunk_rows": next((f.chunk_rows for f in built.features.values() if f.chunk_rows), None),
        "read_s": read_s,
        "profile_s": profile_s,
        "count_s": count_s,
        "check_s": check_s,
        "loaded_kib": loaded_kib,
        "columns": feature_results(report),
        "versions": {
            "python": platform.python_version(),
            "pandas": pd.__version__,
            "numpy": np.__version__,
            "scipy": __import__("scipy").__version__,
            "pyarrow": pa.__version__,
        },
    }


def toque_stream_child(args: argparse.Namespace) -> dict[str, Any]:
    """Stream ``--rows`` current rows, generated chunk by chunk, through a stored profile."""
    from toque.drift import check, profile, types
    from toque.drift import current as counting

    built = profile.from_json(pathlib.Path(args.profile).read_bytes())
    total: types.CurrentCounts | None = None
    count_s = generate_s = 0.0
    batches = chunks(args.seed, CURRENT, args.rows, args.chunk_rows)
    while True:
        started = time.perf_counter()
        table = next(batches, None)
        if table is None:
            break
        frame = table.to_pandas()
        del table
        generate_s += time.perf_counter() - started
        started = time.perf_counter()
        counts = counting.count(built, frame)
        total = counts if total is None else total.add(counts)
        count_s += time.perf_counter() - started
        del frame
    assert total is not None and total.rows == args.rows, "the chunks lost rows"
    started = time.perf_counter()
    report = check.check(built, total, types.Rules())
    check_s = time.perf_counter() - started
    return {
        "count_s": count_s,
        "check_s": check_s,
        "columns": feature_results(report),
        "generate_s": generate_s,
        "chunks": -(-args.rows // args.chunk_rows),
    }


def run_child(argv: list[str], timeout: float | None = None) -> dict[str, Any]:
    """Run a child that writes its JSON to the path after ``--out``; errors become data."""
    out = pathlib.Path(argv[argv.index("--out") + 1])
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:.0f} s (killed)", "wall_s": timeout}
    wall_s = time.perf_counter() - started
    if out.exists():
        result: dict[str, Any] = json.loads(out.read_text())
        result["wall_s"] = wall_s
        return result
    tail = " ".join(done.stderr.strip().splitlines()[-3:])
    return {"error": f"exit status {done.returncode}: {tail}", "wall_s": wall_s}


def toque_argv(*args: str) -> list[str]:
    return [sys.executable, str(pathlib.Path(__file__).resolve()), *args]


@dataclasses.dataclass
class Case:
    rows_reference: int
    rows_current: int
    toque: dict[str, Any]
    evidently: dict[str, Any]
    streamed: bool = False

    @property
    def toque_s(self) -> float:
        return float(sum(self.toque.get(k, 0.0) for k in ("profile_s", "count_s", "check_s")))


def agreement(case: Case) -> tuple[int, int, list[str]]:
    """(columns agreeing, columns compared, one line per disagreement with both scores)."""
    ours, theirs = case.toque.get("columns", {}), case.evidently.get("columns", {})
    both = [name for name in ours if name in theirs]
    differ = [
        f"`{name}`: Toque {ours[name]['method']} {ours[name]['score']:.4f} "
        f"({'drift' if ours[name]['drifted'] else 'no drift'}), Evidently "
        f"{theirs[name]['method']} {theirs[name]['score']:.4f} "
        f"({'drift' if theirs[name]['drifted'] else 'no drift'})"
        for name in both
        if ours[name]["drifted"] != theirs[name]["drifted"]
    ]
    return len(both) - len(differ), len(both), differ


def drifted(columns: dict[str, Any]) -> list[str]:
    return sorted(name for name, column in columns.items() if column["drifted"])


def failure(result: dict[str, Any]) -> str:
    if "MemoryError" in result["error"]:
        return "out of memory"
    if "did not finish" in result["error"]:
        return f"> {result['wall_s']:.0f} s (killed)"
    return "failed"


def mib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


def machine(cases: list[Case]) -> str:
    cpuinfo = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "")
    meminfo = pathlib.Path("/proc/meminfo").read_text().split()
    ram = int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024 / 1024
    ours: dict[str, str] = next((c.toque["versions"] for c in cases if "versions" in c.toque), {})
    theirs: dict[str, str] = next(
        (c.evidently["versions"] for c in cases if "versions" in c.evidently), {}
    )
    return (
        f"Machine: {os.cpu_count()} CPUs ({cpu}), {ram:.1f} GiB RAM, Linux "
        f"{platform.release()}, load average {LOAD[0]:.1f} when the run started (other "
        "work on the machine slows both tools). "
        f"Toque: Python {ours.get('python')}, pandas {ours.get('pandas')}, "
        f"numpy {ours.get('numpy')}, scipy {ours.get('scipy')}, pyarrow {ours.get('pyarrow')}. "
        f"Evidently {theirs.get('evidently')} (own virtualenv): Python {theirs.get('python')}, "
        f"pandas {theirs.get('pandas')}, numpy {theirs.get('numpy')}, scipy {theirs.get('scipy')}."
    )


def report(cases: list[Case], args: argparse.Namespace) -> str:
    lines = [
        "# `toque drift` vs Evidently `DataDriftPreset`",
        "",
        machine(cases),
        "",
        "Data: 25 columns, 20 numeric (normal, lognormal, uniform, exponential, gamma) and 5 "
        "categorical (3, 2, 8, 20 and 40 values, stored as parquet strings), seeded; in the "
        f"current, {_shifted(0.5)} are shifted by +0.5 sigma, {_shifted(0.15)} by +0.15 "
        f"sigma and {_shifted(0.05)} by +0.05 sigma (normalised Wasserstein about the shift: "
        "either side of the 0.1 threshold, where a biased estimate would flip verdicts); "
        "`cat_0`, `cat_2`, `cat_3` are redistributed (Jensen-Shannon distance about 0.21, "
        f"0.15 and 0.33): {len(DESIGNED)} columns drift by design, the +0.05 sigma ones change "
        f"below the threshold, the other {UNCHANGED} are drawn like the reference. "
        "Each tool runs in its own process on the same parquet files; "
        "reading them is not timed. Toque: `build_profile` of the reference (20 serving bins "
        "and a fine grid of 100 quantiles per numeric column), `count` of the current (fine "
        "counts and per-bucket sums), `check` with default rules. Evidently: "
        "`Report([DataDriftPreset()]).run(current, reference)` with the column types given. "
        "Peak RSS is the child's VmHWM: interpreter, imports and the data frames included.",
        *stream_text(cases, args),
        f"Command: `make bench-drift` (`python bench/drift.py {' '.join(sys.argv[1:])}`).",
        "",
        "| rows (reference / current) | Toque profile | Toque count | Toque check | Toque total "
        "| Evidently | Evidently / Toque time | Toque peak RSS | Evidently peak RSS "
        "| Toque / Evidently RSS | verdicts agree | drifted (Toque / Evidently / by design) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes: list[str] = []
    for case in cases:
        t, e = case.toque, case.evidently
        label = f"{case.rows_reference:,} / {case.rows_current:,}"
        if case.streamed:
            label += f" (streamed, {t.get('chunks')} chunks)"
        profile_cell = "stored" if case.streamed else f"{t['profile_s']:.2f} s"
        ours = drifted(t["columns"])
        if "error" in e:
            e_rss = ratio_t = ratio_r = agree = theirs = "-"
            e_time = failure(e)
            limit = e.get("memory_limit") or 0
            under = f" under a {limit / GiB:.0f} GiB address-space limit" if limit else ""
            seen = f" (after {e['wall_s']:.0f} s" if e.get("wall_s") else ""
            seen += f", peak RSS {mib(e['peak_kib'])})" if seen and e.get("peak_kib") else ""
            seen += ")" if seen and not seen.endswith(")") else ""
            notes.append(f"Evidently at {label}{under}: {e['error']}{seen}.")
        else:
            e_time = f"{e['run_s']:.2f} s"
            e_rss = mib(e["peak_kib"])
            ratio_t = f"**{e['run_s'] / case.toque_s:.1f}x**"
            ratio_r = f"**{t['peak_kib'] / e['peak_kib']:.2f}**"
            same, compared, differ = agreement(case)
            agree = f"{same} / {compared}"
            theirs = str(len(drifted(e["columns"])))
            notes += [f"Disagreement at {label}: {line}." for line in differ]
        lines.append(
            f"| {label} | {profile_cell} | {t['count_s']:.2f} s | {t['check_s']:.3f} s "
            f"| {case.toque_s:.2f} s | {e_time} | {ratio_t} | {mib(t['peak_kib'])} | {e_rss} "
            f"| {ratio_r} | {agree} | {len(ours)} / {theirs} / {len(DESIGNED)} |"
        )
        if ours != DESIGNED:
            notes.append(f"Toque at {label} flagged {ours}, by design {DESIGNED}.")
    lines += goal(cases)
    lines += ["", *[f"- {note}" for note in notes]] if notes else []
    lines += methods(cases)
    return "\n".join(lines) + "\n"


def gaps(full: list[Case], names: list[str]) -> list[str]:
    """Per case, the largest score difference between the tools, numeric and categorical."""
    out = []
    for case in full:
        ours, theirs = case.toque["columns"], case.evidently["columns"]
        for kind, label in (("numeric", "normalised Wasserstein"), ("categorical", "JS")):
            pairs = [
                (abs(ours[n]["score"] - theirs[n]["score"]), n)
                for n in names
                if n in theirs and ours[n]["kind"] == kind
            ]
            if not pairs:
                continue
            gap, name = max(pairs)
            relative = max(
                (abs(ours[n]["score"] - theirs[n]["score"]) / theirs[n]["score"], n)
                for n in names
                if n in theirs and ours[n]["kind"] == kind and theirs[n]["score"] >= 0.01
            )
            out.append(
                f"{case.rows_reference:,} rows, {label}: largest difference {gap:.4f} "
                f"(`{name}`); largest relative difference where Evidently reads >= 0.01: "
                f"{relative[0]:.1%} (`{relative[1]}`)."
            )
    return out


def goal(cases: list[Case]) -> list[str]:
    """Issue 10's goal, judged on the 1,000,000-row case when it ran."""
    case = next((c for c in cases if not c.streamed and c.rows_reference == 1_000_000), None)
    if case is None or "error" in case.evidently:
        return []
    seconds, share = case.toque_s, case.toque["peak_kib"] / case.evidently["peak_kib"]
    same, compared, _ = agreement(case)
    return [
        "",
        f"Goal (issue 10) at 1,000,000 x 25: under 2 s, at most half Evidently's peak memory, "
        f"the same verdicts. Here: {seconds:.2f} s ({'met' if seconds < 2 else 'not met'}), "
        f"{share:.2f} of Evidently's peak RSS ({'met' if share <= 0.5 else 'not met'}), "
        f"{same} of {compared} verdicts the same. A check once the profile exists (count + "
        f"check): {case.toque['count_s'] + case.toque['check_s']:.2f} s. The profile JSON: "
        f"{case.toque.get('profile_bytes', 0) / 1024:,.0f} KiB; `auto`-threshold calibration "
        f"on chunks of {case.toque.get('chunk_rows') or 0:,} rows (a seeded sample).",
    ]


def stream_text(cases: list[Case], args: argparse.Namespace) -> list[str]:
    streamed = [c for c in cases if c.streamed]
    if not streamed:
        return []
    case = streamed[0]
    return [
        "",
        f"Streamed: the profile of the {case.rows_reference:,}-row reference above, stored "
        "with `profile.to_json` and loaded by a fresh process with `profile.from_json`; "
        f"{case.rows_current:,} current rows generated {args.chunk_rows:,} at a time (never "
        "all in memory), each chunk `count`ed and merged with `CurrentCounts.add`, then one "
        f"`check`; generating the chunks took {case.toque['generate_s']:.1f} s, not counted. "
        f"Evidently gets the same {case.rows_reference:,}-row reference and the same "
        f"{case.rows_current:,} rows as one parquet file, under `RLIMIT_AS` of "
        f"{args.evidently_memory / GiB:.0f} GiB and a {args.evidently_stream_timeout:.0f} s "
        "timeout.",
    ]


def _shifted(shift: float) -> str:
    return ", ".join(f"`{name}`" for name, s in sorted(SHIFTS.items()) if s == shift)


def _cell(column: dict[str, Any] | None) -> str:
    if not column:
        return "-"
    score = f"{column['score']:.4f}"
    return f"**{score}** drift" if column["drifted"] else score


def methods(cases: list[Case]) -> list[str]:
    """Per-column methods and scores of every side-by-side case, and how far apart."""
    full = [c for c in cases if not c.streamed and "columns" in c.evidently]
    if not full:
        return []
    names = list(full[-1].toque["columns"])
    sizes = [f"{c.rows_reference:,}" for c in full]
    lines = [
        "",
        "Per column (scores: normalised Wasserstein for the numeric columns, Jensen-Shannon "
        "distance for the categorical ones, as both tools chose; both tools' thresholds are "
        "0.1; **bold**: the tool flagged drift):",
        "",
        "| column | change in the current | by design | "
        + " | ".join(f"Toque {n} | Evidently {n}" for n in sizes)
        + " |",
        "|---|---|---|" + "---:|---:|" * len(full),
    ]
    for name in names:
        cells = [
            f"{_cell(c.toque['columns'].get(name))} | {_cell(c.evidently['columns'].get(name))}"
            for c in full
        ]
        lines.append(
            f"| `{name}` | {CHANGES.get(name, '-')} | {'drift' if name in DESIGNED else '-'} "
            f"| {' | '.join(cells)} |"
        )
    chosen = {
        (c.toque["columns"][n]["method"], c.evidently["columns"][n]["method"])
        for c in full
        for n in names
        if n in c.evidently["columns"]
    }
    lines += [
        "",
        "Methods (Toque / Evidently): "
        + "; ".join(f"{ours} / {theirs}" for ours, theirs in sorted(chosen))
        + ".",
        "",
        *[f"- {line}" for line in gaps(full, names)],
    ]
    read = ", ".join(
        f"{c.rows_reference:,} rows: Toque {c.toque['read_s']:.2f} s, Evidently "
        f"{c.evidently['read_s']:.2f} s"
        for c in full
    )
    lines += ["", f"Not timed above: reading both parquet files ({read})."]
    return lines


LOAD = os.getloadavg()


def compare(args: argparse.Namespace) -> int:
    evidently = str(args.evidently_python)
    script = str(ROOT / "bench" / "drift_evidently.py")
    temp = pathlib.Path(tempfile.mkdtemp(prefix="toque-bench-drift-", dir=args.workdir))
    cases: list[Case] = []
    try:
        for rows in args.rows:
            log(f"{rows:,} rows: writing data")
            ref = write(temp / f"ref-{rows}.parquet", args.seed, REFERENCE, rows, args.chunk_rows)
            cur = write(temp / f"cur-{rows}.parquet", args.seed, CURRENT, rows, args.chunk_rows)
            log(f"{rows:,} rows: toque")
            files = ["--reference", str(ref), "--current", str(cur)]
            profile = temp / f"profile-{rows}.json"
            ours = run_child(
                toque_argv(
                    "_toque",
                    *files,
                    "--profile-out",
                    str(profile),
                    "--out",
                    str(temp / f"toque-{rows}.json"),
                )
            )
            if "error" in ours:
                sys.exit(f"drift: the toque side failed at {rows:,} rows: {ours['error']}")
            log(f"{rows:,} rows: evidently")
            theirs = run_child(
                [evidently, script, *files, "--out", str(temp / f"evidently-{rows}.json")],
                timeout=args.evidently_timeout,
            )
            cases.append(Case(rows, rows, ours, theirs))
        if args.stream_rows:
            rows = args.rows[-1]
            log(f"{args.stream_rows:,} rows streamed: toque")
            ours = run_child(
                toque_argv(
                    "_toque-stream",
                    "--profile",
                    str(temp / f"profile-{rows}.json"),
                    "--rows",
                    str(args.stream_rows),
                    "--chunk-rows",
                    str(args.chunk_rows),
                    "--seed",
                    str(args.seed),
                    "--out",
                    str(temp / "toque-stream.json"),
                )
            )
            if "error" in ours:
                sys.exit(f"drift: the toque stream failed: {ours['error']}")
            log(f"{args.stream_rows:,} rows: writing data for evidently")
            cur = write(
                temp / "cur-stream.parquet", args.seed, CURRENT, args.stream_rows, args.chunk_rows
            )
            log(f"{args.stream_rows:,} rows: evidently")
            theirs = run_child(
                [
                    evidently,
                    script,
                    "--reference",
                    str(temp / f"ref-{rows}.parquet"),
                    "--current",
                    str(cur),
                    "--memory-limit",
                    str(args.evidently_memory),
                    "--out",
                    str(temp / "evidently-stream.json"),
                ],
                timeout=args.evidently_stream_timeout,
            )
            theirs.setdefault("memory_limit", args.evidently_memory)
            cases.append(Case(rows, args.stream_rows, ours, theirs, streamed=True))
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    text = report(cases, args)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


def log(message: str) -> None:
    print(f"drift: {message} ...", file=sys.stderr, flush=True)


def child(args: argparse.Namespace, work: Any) -> int:
    result = work(args)
    result["peak_kib"] = status_kib("VmHWM")
    pathlib.Path(args.out).write_text(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    one = sub.add_parser("_toque", help="child: one case, Toque side")
    one.add_argument("--reference", required=True)
    one.add_argument("--current", required=True)
    one.add_argument("--profile-out", default="")
    one.add_argument("--out", required=True)
    stream = sub.add_parser("_toque-stream", help="child: the streamed case, Toque side")
    stream.add_argument("--profile", required=True)
    stream.add_argument("--rows", type=int, required=True)
    stream.add_argument("--chunk-rows", type=int, required=True)
    stream.add_argument("--seed", type=int, required=True)
    stream.add_argument("--out", required=True)
    parser.add_argument("--out", type=pathlib.Path, default=None, help="Markdown report path")
    parser.add_argument(
        "--rows",
        type=lambda s: [int(r) for r in s.split(",")],
        default=[100_000, 1_000_000],
        help="comma-separated sizes of reference and current",
    )
    parser.add_argument("--stream-rows", type=int, default=10_000_000, help="0 skips")
    parser.add_argument("--chunk-rows", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument(
        "--evidently-python",
        type=pathlib.Path,
        default=ROOT / ".venv-evidently" / "bin" / "python",
    )
    parser.add_argument("--evidently-timeout", type=float, default=600.0, help="seconds")
    parser.add_argument("--evidently-stream-timeout", type=float, default=180.0, help="seconds")
    parser.add_argument(
        "--evidently-memory", type=int, default=8 * GiB, help="RLIMIT_AS of the streamed case"
    )
    parser.add_argument("--workdir", type=pathlib.Path, default=None, help="temp dir parent")
    args = parser.parse_args(argv)
    if args.mode == "_toque":
        return child(args, toque_child)
    if args.mode == "_toque-stream":
        return child(args, toque_stream_child)
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
