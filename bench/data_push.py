"""Benchmark: ``toque data push`` against ``dvc add`` + ``dvc push``, to one real MinIO.

Two cases: one big file of random bytes (default 1 GiB) and many small files (default
10,000 x 10 KB). Each tool runs as a fresh process (start-up included, as a user pays it),
writing to its own empty bucket on the same MinIO server; the data sits in one temporary
directory on local disk, inside the DVC repository so that ``dvc add`` accepts it, and
``toque`` pushes the same directory. Results go to stdout and, as Markdown, to ``--out``.
Run by ``make bench-data``; ``--small-files`` and ``--big-size`` make quick runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

from toque.data import config, s3
from toque.local import cluster, services

ROOT = pathlib.Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


@dataclasses.dataclass
class Case:
    name: str
    files: int
    size: int  # total bytes
    toque_s: float = 0.0
    unpacked_s: float | None = None  # toque with packing off (one object per file)
    pull_s: float = 0.0
    dvc_add_s: float = 0.0
    dvc_push_s: float = 0.0

    @property
    def dvc_s(self) -> float:
        return self.dvc_add_s + self.dvc_push_s


def find_dvc(explicit: str | None) -> str:
    candidates = [explicit] if explicit else []
    candidates += [
        str(pathlib.Path(sys.executable).with_name("dvc")),
        str(ROOT / ".venv-bench" / "bin" / "dvc"),
        shutil.which("dvc") or "",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    sys.exit("data_push: no dvc executable found; pass --dvc or install 'dvc[s3]'")


def timed(argv: list[str], env: dict[str, str], cwd: pathlib.Path) -> tuple[float, str]:
    # Start each command with no dirty pages left by the data generation or the previous
    # command: otherwise whoever runs first pays for writing back the other's bytes.
    os.sync()
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"data_push: {' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    return elapsed, result.stdout


def make_big(directory: pathlib.Path, size: int) -> None:
    directory.mkdir(parents=True)
    with (directory / "data.bin").open("wb") as out:
        left = size
        while left:
            chunk = min(left, 64 * MiB)
            out.write(os.urandom(chunk))
            left -= chunk


def make_small(directory: pathlib.Path, count: int, size: int) -> None:
    for index in range(count):
        # 1,000 files per folder, as a sharded image or shard-per-row dataset would be.
        folder = directory / f"part-{index // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index:06d}.bin").write_bytes(os.urandom(size))


def count_objects(minio: services.Minio, bucket: str) -> int:
    settings = config.StoreConfig(minio.endpoint, minio.access_key, minio.secret_key)
    listed = s3.make_client(settings).list_objects(bucket, recursive=True)
    return sum(1 for _ in listed)


def toque_push(
    case: Case, data: pathlib.Path, minio: services.Minio, bucket: str, env: dict[str, str]
) -> tuple[float, float]:
    """Seconds to push ``data``, then seconds to pull it back verified (not compared)."""
    env = {**os.environ, **minio.env(), "TOQUE_DATA_BUCKET": bucket, **env}
    cli = [sys.executable, "-m", "toque.cli.main", "data"]
    seconds, out = timed([*cli, "push", str(data), "--name", case.name, "-q"], env, data)
    if not re.fullmatch(rf"{case.name}@sha256:[0-9a-f]{{64}}\n", out):
        sys.exit(f"data_push: unexpected toque output {out!r}")
    # Not timed: the push is only counted if every byte comes back verified.
    dest = data.parent / f"pulled-{bucket}"
    pull_s, _ = timed([*cli, "pull", out.strip(), str(dest), "-q"], env, data)
    pulled = [p for p in dest.rglob("*") if p.is_file()]
    if len(pulled) != case.files or sum(p.stat().st_size for p in pulled) != case.size:
        sys.exit(f"data_push: toque pull of {case.name} returned other files")
    shutil.rmtree(dest)
    return seconds, pull_s


def run_case(
    case: Case, data: pathlib.Path, repo: pathlib.Path, minio: services.Minio, dvc: str
) -> None:
    case.toque_s, case.pull_s = toque_push(case, data, minio, f"toque-{case.name}", {})
    if case.files > 1:
        off = {"TOQUE_DATA_PACK_BELOW": "0"}
        case.unpacked_s, _ = toque_push(case, data, minio, f"toque-{case.name}-unpacked", off)

    minio.create_bucket(f"dvc-{case.name}")
    env = {**os.environ, **minio.env(), "DVC_NO_ANALYTICS": "1"}
    remote = f"s3://dvc-{case.name}/store"
    timed([dvc, "remote", "add", "-f", "-d", case.name, remote], env, repo)
    timed([dvc, "remote", "modify", case.name, "endpointurl", minio.endpoint], env, repo)
    case.dvc_add_s, _ = timed([dvc, "add", str(data.relative_to(repo))], env, repo)
    case.dvc_push_s, _ = timed([dvc, "push", "-r", case.name], env, repo)
    stored = count_objects(minio, f"dvc-{case.name}")
    # dvc stores each file plus one .dir listing for a directory.
    if stored < case.files:
        sys.exit(f"data_push: dvc stored {stored} objects for {case.files} files")


def rate(case: Case, seconds: float) -> str:
    text = f"{case.size / MiB / seconds:,.0f} MiB/s"
    return text if case.files == 1 else f"{text}, {case.files / seconds:,.0f} files/s"


def report(cases: list[Case], dvc: str, args: argparse.Namespace) -> str:
    dvc_version = subprocess.run([dvc, "--version"], capture_output=True, text=True).stdout
    cpu = next(
        (line.split(":", 1)[1].strip() for line in pathlib.Path("/proc/cpuinfo").read_text()
         .splitlines() if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    lines = [
        "# `toque data push` vs `dvc add` + `dvc push`",
        "",
        f"Machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"dvc {dvc_version.strip()}, one local MinIO server (single drive) on loopback.",
        "Each command is a fresh process (start-up included) pushing to an empty bucket; "
        "data files were just written, so both tools read them from the page cache. "
        "toque creates its buckets itself, as it does by default: versioned, with Object Lock "
        "(blobs pinned by object version; packs and single-request blobs stored with their "
        "SHA-256 checksum); dvc's is a plain one.",
        f"Command: `python bench/data_push.py --big-size {args.big_size} "
        f"--small-files {args.small_files} --small-size {args.small_size}`.",
        "",
        "| case | files | bytes | toque push | toque | dvc add | dvc push | dvc total | dvc "
        "| dvc/toque |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cases:
        runs = [("", c.toque_s)]
        if c.unpacked_s is not None:
            runs.append((" (toque without packs)", c.unpacked_s))
        for label, seconds in runs:
            lines.append(
                f"| {c.name}{label} | {c.files:,} | {c.size / MiB:,.1f} MiB | {seconds:.2f} s "
                f"| {rate(c, seconds)} | {c.dvc_add_s:.2f} s | {c.dvc_push_s:.2f} s "
                f"| {c.dvc_s:.2f} s | {rate(c, c.dvc_s)} | **{c.dvc_s / seconds:.1f}x** |"
            )
    lines += [
        "",
        "Not part of the comparison: `toque data pull` of the same versions, every file's "
        "SHA-256 verified, took "
        + ", ".join(f"{c.pull_s:.2f} s ({c.name})" for c in cases)
        + ". The run without packs sets `TOQUE_DATA_PACK_BELOW=0`: one S3 object per file.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=None, help="Markdown report path")
    parser.add_argument("--big-size", type=int, default=1024 * MiB, help="bytes; 0 skips")
    parser.add_argument("--small-files", type=int, default=10_000, help="count; 0 skips")
    parser.add_argument("--small-size", type=int, default=10_000, help="bytes per small file")
    parser.add_argument("--dvc", default=None, help="the dvc executable")
    parser.add_argument("--workdir", type=pathlib.Path, default=None, help="temp dir parent")
    args = parser.parse_args(argv)
    dvc = find_dvc(args.dvc)
    minio_binary = cluster.find_binaries(("minio",))["minio"]
    temp = pathlib.Path(tempfile.mkdtemp(prefix="toque-bench-", dir=args.workdir))
    minio = services.Minio(workdir=temp / "minio", binary=minio_binary)
    cases: list[Case] = []
    try:
        minio.start()
        repo = temp / "repo"
        repo.mkdir()
        timed([dvc, "init", "--no-scm"], {**os.environ, "DVC_NO_ANALYTICS": "1"}, repo)
        if args.big_size:
            make_big(repo / "big", args.big_size)
            cases.append(Case("big", 1, args.big_size))
        if args.small_files:
            make_small(repo / "small", args.small_files, args.small_size)
            cases.append(Case("small", args.small_files, args.small_files * args.small_size))
        for case in cases:
            print(f"data_push: {case.name} ...", file=sys.stderr, flush=True)
            run_case(case, repo / case.name, repo, minio, dvc)
    finally:
        minio.stop()
        shutil.rmtree(temp, ignore_errors=True)
    text = report(cases, dvc, args)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
