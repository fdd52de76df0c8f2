"""kill -9 at any moment, a full disk, a read-only folder.

The campaign: two workspaces, each a seeded series of cycles: a data drop (new clients, drifting ones, duplicates of
earlier rows, a large file, a bad file, a touched file, or nothing), then fullprocess killed with SIGKILL one to
three times in a row (after a random delay, or the moment an observable point is reached), then a normal run. After
every kill: every artifact parses, the deployment is one complete release, the history store passes
PRAGMA integrity_check, and the ingested store is whole (its manifest parses, the batches and index it names read)
and holds every row of the ingested files and nothing else, each once (so do its exports when in step). After
every normal run: it exited 0 and finished everything (campaign.check_done), and the next tick has nothing to do.
The quick form (make test) survives SIZES["kills"] kills; SOAK=1 (make soak) the long form.
"""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from campaign import (
    ON_POSTGRESQL,
    SIZES,
    Drops,
    check_done,
    check_whole,
    clone,
    command,
    drop,
    prepared_workspace,
    query,
    register_shipped,
)
from conftest import ROOT, history_rows, rejected_record, run_script, tree_hashes, write_config

SEED = 20261127
CHAINS = 2  # two workspaces side by side: one per core
KINDS = {"new": 26, "flip": 10, "dup": 8, "mixed": 8, "small": 6, "large": 8, "bad": 10, "odd": 6, "touch": 8,
         "none": 10}
# Points of a run observable from outside, in the order a run reaches them (the last one reached names where a
# kill landed): a store batch or index appears (the store writes them before the manifest that names them), a file
# is replaced or appended to (its inode or mtime changes), a link is switched.
BATCHES, STORE, MANIFEST = "ingesteddata/store/batches", "ingesteddata/store", "ingesteddata/store/manifest.json"
MARKERS = [(BATCHES, "batch written"), (STORE, "index written"), (MANIFEST, "store committed"),
           ("ingesteddata/finaldata.csv", "finaldata exported"),
           ("ingesteddata/ingestedfiles.txt", "file list exported"),
           ("models/trainedmodel.pkl", "model written"), ("models/trainedmodel.json", "model trained"),
           ("models/scores.json", "model scored"), ("production_deployment/releases", "release built"),
           ("production_deployment/current", "release switched"), ("history", "run recorded"),
           ("models/diagnostics.json", "diagnostics written"), ("reports/report.pdf", "report written")]
TEMP_FOLDERS = ("ingesteddata", STORE, "models", "reports", "production_deployment", "production_deployment/releases")


def store_files(folder: Path, pattern: str) -> dict[str, tuple[int, int]]:
    """The store's files of a kind (batches, indexes), by name: (inode, mtime)."""
    out = {}
    for p in folder.glob(pattern):
        with contextlib.suppress(OSError):  # removed as garbage meanwhile
            st = p.stat()
            out[p.name] = (st.st_ino, st.st_mtime_ns)
    return out


def marker_state(ws: Path) -> dict[str, Any]:
    """What each marker looks like now."""
    out: dict[str, Any] = {}
    for rel, label in MARKERS:
        p = ws / rel
        if label == "batch written":
            out[label] = store_files(p, "*.parquet")
        elif label == "index written":
            out[label] = store_files(p, "index-*.npz")
        elif label == "release built":
            out[label] = sorted(os.listdir(p)) if p.exists() else []
        elif label == "release switched":
            out[label] = os.readlink(p) if p.is_symlink() else None
        elif label == "run recorded":
            out[label] = query(ws, "SELECT COUNT(*) FROM runs WHERE step = 'fullprocess'")[0][0]
        else:
            out[label] = (p.stat().st_ino, p.stat().st_mtime_ns) if p.exists() else None
    return out


def appeared(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether a store file was written between two listings (garbage removed is not a write)."""
    return any(before.get(name) != seen for name, seen in after.items())


def phase(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The furthest marker a killed run changed."""
    reached = [label for _, label in MARKERS
               if (appeared(before[label], after[label]) if label in ("batch written", "index written")
                   else before[label] != after[label])]
    return reached[-1] if reached else "start-up, scan or drift check"


EVENTS = ["a temp file being written", "a batch being written", "store committed", "finaldata exported",
          "model trained", "release switched", "report written"]


def events(ws: Path) -> dict[str, Callable[[], bool]]:
    """Points a run reaches, checked from outside every few milliseconds: a batch file appearing (killed there, the
    run dies mid-batch or between the batch and the manifest), the manifest replaced (between the manifest and the
    exports), finaldata.csv written (mid-export), and later steps."""
    def changed(rel: str) -> Callable[[], bool]:
        p = ws / rel
        first = (p.stat().st_ino, p.stat().st_mtime_ns) if p.exists() else None

        def test() -> bool:
            try:
                return (p.stat().st_ino, p.stat().st_mtime_ns) != first
            except OSError:
                return False
        return test

    def temp_file() -> bool:
        for folder in TEMP_FOLDERS:
            with contextlib.suppress(OSError):
                if any(".tmp-" in n or ".partial-" in n for n in os.listdir(ws / folder)):
                    return True
        return False
    batches = ws / BATCHES
    first_batches = store_files(batches, "*.parquet")

    def batch_file() -> bool:
        """A new batch file is there (being written, or written and not yet committed)."""
        return appeared(first_batches, store_files(batches, "*.parquet"))
    link = ws / "production_deployment" / "current"
    first_link = os.readlink(link)
    return {EVENTS[0]: temp_file, "a batch being written": batch_file,
            "store committed": changed(MANIFEST),
            "finaldata exported": changed("ingesteddata/finaldata.csv"),
            "model trained": changed("models/trainedmodel.json"),
            "release switched": lambda: os.readlink(link) != first_link,
            "report written": changed("reports/report.pdf")}


# Run fullprocess with an audit hook that SIGKILLs the process just before its k-th operation on a file of the
# workspace (open, rename, remove, copy, link), after writing down which: a kill point that is the same on every
# machine, however fast. (SQLite's own writes are not audited; the timed kills reach those.)
KILL_BEFORE_OP = r"""
import os, runpy, signal, sys
target, note = int(sys.argv[1]), sys.argv[2]
sys.argv = sys.argv[3:]
ws = os.path.dirname(os.path.abspath(sys.argv[sys.argv.index("--config") + 1])) + os.sep
OPS = {"open", "os.rename", "os.remove", "os.symlink", "os.rmdir", "shutil.rmtree", "shutil.copyfile"}
SECOND = {"os.rename", "os.symlink", "shutil.copyfile"}  # these name the file they change second
seen = []
log = open(note, "w", buffering=1)  # target 0: no kill, every operation listed
def hook(event, args):
    if event in OPS and (target == 0 or len(seen) < target):
        path = args[1] if event in SECOND else args[0]
        path = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else ""
        if path.startswith(ws):
            seen.append(f"{event} {path[len(ws):]}")
            if len(seen) == target or target == 0:
                log.write(seen[-1] + "\n")
            if len(seen) == target:
                os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(hook)
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def kill(ws: Path, delay: float | None = None, event: str | None = None, op: int | None = None) -> str | None:
    """Start a tick and SIGKILL it (and whatever it started) after delay seconds, once event is reached, or just
    before its op-th file operation; returns where, or None when the run ended first (it must have succeeded)."""
    ready = events(ws)[event] if event else None
    note = ws.parent / f"{ws.name}.killpoint"
    note.unlink(missing_ok=True)
    cmd = command(ws) if op is None else [command(ws)[0], "-c", KILL_BEFORE_OP, str(op), str(note), *command(ws)[1:]]
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, cwd=ws, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        deadline = time.monotonic() + (delay if delay is not None else 600)
        while p.poll() is None:
            if (ready and ready()) or time.monotonic() >= deadline:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                return event or f"after {delay:.2f} s"
            time.sleep(0.002)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # what the run started (pip look-ups) dies with it
        err.seek(0)
        said = err.read().decode()
    if p.returncode == -signal.SIGKILL and op:
        return f"before {note.read_text().strip()}"
    assert p.returncode == 0 and "Traceback" not in said, said
    return None


def normal_run(ws: Path, drops: Drops) -> float:
    """A tick left alone: it must succeed and finish everything; then the next one has nothing to do."""
    t0 = time.monotonic()
    p = subprocess.run(command(ws), cwd=ws, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - t0
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert "Traceback" not in p.stderr, p.stderr
    check_done(ws, drops)
    p = subprocess.run(command(ws), cwd=ws, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("no new data"), p.stdout + p.stderr
    return seconds


@contextlib.contextmanager
def told(seed: int, kind: str, runs: list[str]) -> Iterator[None]:
    """A failed check names the chain's seed, the cycle's drop and the runs of the cycle so far."""
    try:
        yield
    except AssertionError as e:
        raise AssertionError(f"seed {seed}, drop {kind}, then: {'; '.join(runs)}:\n{e}") from e


def campaign(template: Path, ws: Path, seed: int, kills: int) -> tuple[list[tuple[str, str]], Counter]:
    """One workspace's series of drops, kills and normal runs; returns (how, where) of every kill, and the seconds
    spent killing, checking and in normal runs."""
    clone(template, ws)
    plan = random.Random(seed)
    drops = Drops(ws / "sourcedata", np.random.default_rng(seed))
    register_shipped(drops, ws)
    spent: Counter = Counter()
    typical = normal_run(ws, drops)  # the shipped drift story, uninterrupted: how long a heavy run takes
    landed: list[tuple[str, str]] = []
    while len(landed) < kills:
        kind = plan.choices(list(KINDS), weights=list(KINDS.values()))[0]
        if kind != "none":
            drop(drops, kind, ws)
        since: list[str] = []  # this cycle's kills, named in any failure: where to look
        for _ in range(plan.choice([2, 3, 3, 4])):
            before = marker_state(ws)
            t0 = time.monotonic()
            mode = plan.random()
            if mode < 0.25:
                how = kill(ws, event=plan.choice(EVENTS))
            elif mode < 0.7:
                how = kill(ws, op=plan.randint(1, 160))  # a run that ingests, retrains and deploys makes ~140
            else:
                how = kill(ws, delay=typical * plan.random())
            t1 = time.monotonic()
            with told(seed, kind, since):
                if how:
                    since.append(f"killed: {how} (reached: {phase(before, marker_state(ws))})")
                    check_whole(ws, drops)
                    landed.append((how, phase(before, marker_state(ws))))
                else:
                    since.append("a run not killed")
                    check_done(ws, drops)
            spent["killing"] += t1 - t0
            spent["checking"] += time.monotonic() - t1
        t0 = time.monotonic()
        with told(seed, kind, [*since, "the normal run"]):
            typical = max(typical * 0.8, normal_run(ws, drops))
        spent["normal runs"] += time.monotonic() - t0
    return landed, spent


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """Release 1 from the practice data, the shipped source data waiting (drift), look-ups cached. Data drift
    retrains too here, and a challenger may score a little lower: more runs train and deploy, so more kills land
    in training and deployment. CAMPAIGN_HISTORY=postgresql: the history on a PostgreSQL server the tests start."""
    store = {}
    if ON_POSTGRESQL:
        import pgserver
        store["history_url"] = pgserver.fresh_database(request.getfixturevalue("pg_server"), "crash_template")
    return prepared_workspace(tmp_path_factory.mktemp("crash") / "template", drift={"retrain_on_data_drift": True},
                              deployment={"promotion_tolerance": 0.05}, **store)


def test_kill_minus_nine_campaign(template, tmp_path):
    per_chain = -(-SIZES["kills"] // CHAINS)
    with ThreadPoolExecutor(max_workers=CHAINS) as pool:
        results = list(pool.map(lambda i: campaign(template, tmp_path / f"chain{i}", SEED + i, per_chain),
                                range(CHAINS)))
    landed = [k for r, _ in results for k in r]
    spent = sum((c for _, c in results), Counter())
    where = Counter(w for _, w in landed)
    how = Counter("timed" if h.startswith("after") else "before a file operation" if h.startswith("before")
                  else f"event: {h}" for h, _ in landed)
    ops = Counter(h.split(" ")[2] for h, _ in landed if h.startswith("before "))
    print(f"\n{len(landed)} kills survived; where they landed: {dict(where.most_common())}; "
          f"how: {dict(how.most_common())}; files whose operation a kill preceded: {dict(ops.most_common())}; "
          f"seconds spent: { {k: round(v) for k, v in spent.items()} }")
    assert len(landed) >= SIZES["kills"]
    # The kills reached every part of a run, not one phase only.
    assert len(where) >= 5, where


# ---------------------------------------------------------------- a full disk, a read-only folder

def can_mount() -> bool:
    """True when this process may mount file systems (root in a machine or a privileged container)."""
    if os.geteuid() != 0:
        return False
    probe = Path("/tmp") / f".mount-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], check=True)
        return ok
    finally:
        probe.rmdir()


@contextlib.contextmanager
def tmpfs(path: Path, megabytes: int) -> Iterator[Path]:
    """A small RAM disk mounted at path for the block."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make folder read-only for the block: a read-only bind mount as root (root ignores permission bits),
    the permission bits otherwise."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
            yield
        finally:
            subprocess.run(["umount", str(folder)], check=True)
    else:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer can still use on path's file system."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(disk: Path, leave: int) -> Path:
    """Allocate a file that leaves about `leave` bytes free on disk."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY)
    try:
        os.posix_fallocate(fd, 0, max(1, free_bytes(disk) - leave))
    finally:
        os.close(fd)
    return filler


def assert_one_clear_line(p: subprocess.CompletedProcess, *words: str) -> str:
    """The failed run said why in one line on stderr, naming what it was told to, and nothing on stdout."""
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert p.stdout == ""
    return lines[0]


def shipped_drops(ws: Path) -> Drops:
    """The drops of a prepared workspace: the shipped practice and source files."""
    drops = Drops(ws / "sourcedata", np.random.default_rng(0))
    register_shipped(drops, ws)
    return drops


@pytest.mark.skipif(not can_mount(), reason="mounting a small tmpfs needs root; a full disk cannot be made honestly")
def test_a_full_disk_fails_in_one_line_loses_nothing_and_the_next_run_completes(template, tmp_path):
    """The workspace on a RAM disk with little room left: the run with the shipped drift story to do fails where
    the space runs out (ingestion, training, deployment or the outputs, depending on how much is left), says so in
    one line, and loses nothing; once space is freed the next run does all the work."""
    with tmpfs(tmp_path / "disk", 64) as disk:
        # How much a run that ingests, retrains, deploys and reports writes, measured on the same disk.
        ws = clone(template, disk / "calm")
        before = free_bytes(disk)
        assert subprocess.run(command(ws), cwd=ws, capture_output=True).returncode == 0
        needed = before - free_bytes(disk)
        shutil.rmtree(ws)
        # Denser where little is left: the data and the release need far less than the report and its copy.
        points = [int(needed * (i / SIZES["disk_points"]) ** 2) for i in range(SIZES["disk_points"])]
        outcomes = []
        for leave in points:
            ws = clone(template, disk / "ws")
            drops = shipped_drops(ws)
            filler = fill(disk, int(leave))
            p = subprocess.run(command(ws), cwd=ws, capture_output=True, text=True, timeout=600)
            if p.returncode == 0:
                assert "Traceback" not in p.stderr, p.stderr
                outcomes.append((int(leave), "completed" + "".join(f"; {w}" for w in p.stderr.splitlines())))
            else:
                line = assert_one_clear_line(p)
                assert "No space left on device" in line or "KB free there" in line, line
                outcomes.append((int(leave), line.replace(str(disk), "")))
            filler.unlink()
            check_whole(ws, drops)  # with room again: SQLite needs a little to even open the store
            p = subprocess.run(command(ws), cwd=ws, capture_output=True, text=True, timeout=600)
            assert p.returncode == 0, p.stderr
            check_done(ws, drops)
            assert (ws / "production_deployment" / "releases" / "0002").is_dir()
            shutil.rmtree(ws)
    print("\n" + "\n".join(f"{leave // 1024:6d} KB free: {what}" for leave, what in outcomes))
    assert sum(not what.startswith("completed") for _, what in outcomes) >= 2


def one_file_workspace(ws: Path, rows: int = 60_000) -> Path:
    """A workspace whose input folder holds one new data file of rows rows (1% of them repeated); the file."""
    (ws / "sourcedata").mkdir(parents=True)
    shutil.copytree(ROOT / "testdata", ws / "testdata")
    write_config(ws)
    rng = np.random.default_rng(SEED)
    values = rng.integers(0, 5000, size=(rows, 3))
    lines = [f"c{i:07d},{a},{b},{c},{i % 2}\n" for i, (a, b, c) in enumerate(values.tolist())]
    lines += lines[:rows // 100]
    path = ws / "sourcedata" / "data001.csv"
    path.write_text("corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n" + "".join(lines))
    return path


@pytest.mark.skipif(not can_mount(), reason="mounting a small tmpfs needs root; a full disk cannot be made honestly")
@pytest.mark.parametrize("how", ["first file", "file read ahead", "file read in pieces"])
def test_a_full_disk_while_a_file_is_stored_fails_the_run_and_leaves_the_file_to_the_next_run(tmp_path, how):
    """Found by trying it: a full disk while a good file's batch was written recorded the file as rejected ("cannot
    read file"), so it was never read again, even once there was room. The disk is the store's, not the file's.
    A file in one piece has its batch written while its rows are de-duplicated, one in pieces piece by piece: a
    failure fails the run alike."""
    ahead = how == "file read ahead"
    with tmpfs(tmp_path / "disk", 16) as disk:
        ws = disk / "ws"
        one_file_workspace(ws)
        if how == "file read in pieces":
            write_config(ws, ingestion={"settle_seconds": 0, "unterminated_seconds": 0, "chunk_bytes": 256 * 1024})
        if ahead:  # taken first, so data001.csv is the file read ahead
            (ws / "sourcedata" / "data000.csv").write_text(
                "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\nz1,1,2,3,0\n")
        filler = fill(disk, 300 * 1024)
        p = run_script("ingestion.py", ws)
        line = assert_one_clear_line(p, "No space left on device", "sourcedata/data001.csv", "next run")
        assert f"store/batches/00000{1 + ahead}.parquet" in line, line
        assert rejected_record(ws) == {}
        assert not (ws / "ingesteddata" / "store" / "batches" / f"00000{1 + ahead}.parquet").exists()
        assert not (ws / "ingesteddata" / "store" / "manifest.json").exists()  # nothing of the run committed
        filler.unlink()
        assert history_rows(ws, "SELECT outcome FROM runs WHERE step = 'ingestion'") == [("failed",)]
        p = run_script("ingestion.py", ws)
        assert p.returncode == 0, p.stderr
        assert f"ingested {1 + ahead} new file{'s' * ahead}: {60_000 + ahead:,} rows, 600 duplicates dropped" \
            in p.stdout
        assert len((ws / "ingesteddata" / "finaldata.csv").read_text().splitlines()) == 60_001 + ahead
        assert len(list((ws / "ingesteddata" / "store").glob("batches/*.parquet"))) == 1 + ahead


@pytest.mark.skipif(not can_mount(), reason="mounting a small tmpfs needs root; a full disk cannot be made honestly")
def test_a_file_the_disk_has_room_for_is_ingested_in_one_run_though_its_csv_lines_would_not_fit(tmp_path):
    """The CSV lines kept for the export double a file's bytes on disk until then: where the disk has room for the
    ingest but not for them, they are not kept (the export reads the batch back) and the run succeeds, where it
    failed at the export (No space left on device: finaldata.csv)."""
    with tmpfs(tmp_path / "disk", 16) as disk:
        calm = disk / "calm"
        size = one_file_workspace(calm).stat().st_size
        before = free_bytes(disk)
        assert run_script("ingestion.py", calm).returncode == 0
        needed = before - free_bytes(disk)
        expected = (calm / "ingesteddata" / "finaldata.csv").read_bytes()
        shutil.rmtree(calm)
        ws = disk / "ws"
        one_file_workspace(ws)
        fill(disk, needed + size // 2)  # room for the ingest, not for the lines as well
        p = run_script("ingestion.py", ws)
        assert p.returncode == 0, p.stderr
        assert (ws / "ingesteddata" / "finaldata.csv").read_bytes() == expected
        assert not list((ws / "ingesteddata" / "store").glob("csv-*.csv"))


@pytest.mark.parametrize("folder", ["ingesteddata", "models", "production_deployment"])
def test_a_read_only_folder_fails_in_one_line_loses_nothing_and_the_next_run_completes(template, tmp_path, folder):
    ws = clone(template, tmp_path / "ws")
    drops = shipped_drops(ws)
    release = os.readlink(ws / "production_deployment" / "current")
    with read_only(ws / folder):
        p = subprocess.run(command(ws), cwd=ws, capture_output=True, text=True, timeout=600)
        assert_one_clear_line(p, folder)
    check_whole(ws, drops)
    assert os.readlink(ws / "production_deployment" / "current") == release
    assert query(ws, "SELECT outcome FROM runs WHERE step = 'fullprocess' ORDER BY id DESC LIMIT 1") == [("failed",)]
    p = subprocess.run(command(ws), cwd=ws, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    check_done(ws, drops)
    assert "deployed release 2" in p.stdout


def test_a_read_only_log_folder_does_not_stop_the_work(template, tmp_path):
    ws = clone(template, tmp_path / "ws")
    drops = shipped_drops(ws)
    with read_only(ws / "logs"):
        p = subprocess.run(command(ws), cwd=ws, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "deployed release 2" in p.stdout
    assert "Traceback" not in p.stderr and "logs" in p.stderr
    check_done(ws, drops)


def test_a_history_store_that_cannot_be_written_fails_the_tick_in_one_line(template, tmp_path):
    """Later runs decide from the history (which rows were checked): a tick that can neither read nor record it
    fails before changing anything, and says so; once the store is writable again the next run does the work."""
    ws = clone(template, tmp_path / "ws")
    drops = shipped_drops(ws)
    before = tree_hashes(ws / "ingesteddata")         # the store and its exports
    with read_only(ws / "history"):
        p = subprocess.run(command(ws), cwd=ws, capture_output=True, text=True, timeout=600)
    assert_one_clear_line(p, "the history store history/history.sqlite3 cannot be read (unable to open database")
    assert tree_hashes(ws / "ingesteddata") == before
    p = subprocess.run(command(ws), cwd=ws, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and "deployed release 2" in p.stdout, p.stdout + p.stderr
    check_done(ws, drops)


def killed_right_after(template: Path, tmp_path: Path, operation: str) -> Path:
    """A workspace whose run was killed at the first file operation after the named one."""
    calm = clone(template, tmp_path / "calm")
    assert kill(calm, op=0) is None                    # op 0: no kill, the run's file operations listed
    ops = (tmp_path / "calm.killpoint").read_text().splitlines()
    at = ops.index(operation)
    ws = clone(template, tmp_path / "ws")
    assert kill(ws, op=at + 2) == f"before {ops[at + 1]}"
    return ws


def test_a_run_killed_right_after_deploying_leaves_its_outputs_to_the_next_tick(template, tmp_path):
    """Found by the campaign: killed between switching the release and the end of the run, a run left the report
    describing the previous release, and the next tick (with nothing new to do) never refreshed it."""
    ws = killed_right_after(template, tmp_path, "os.rename production_deployment/current")
    assert os.readlink(ws / "production_deployment" / "current") == "releases/0002"
    p = subprocess.run(command(ws), cwd=ws, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and p.stdout.startswith("no new data"), p.stdout + p.stderr
    check_done(ws, shipped_drops(ws))  # among others: reports/report.pdf made after release 2


def test_a_history_store_that_cannot_be_read_stops_the_run_before_it_changes_anything(template, tmp_path):
    """Found by the full-disk campaign: a history store SQLite could not open (no room for its shared-memory file)
    was read as "nothing checked yet", warned about twice, and the run went on to ingest and retrain."""
    ws = clone(template, tmp_path / "ws")
    drops = shipped_drops(ws)
    store = ws / "history" / "history.sqlite3"
    store.write_bytes(b"this is not an SQLite file\n" * 200)
    before = tree_hashes(ws / "ingesteddata")         # the store and its exports
    p = subprocess.run(command(ws), cwd=ws, capture_output=True, text=True, timeout=600)
    line = assert_one_clear_line(p, "the history store history/history.sqlite3 cannot be read")
    assert "file is not a database" in line, line
    assert tree_hashes(ws / "ingesteddata") == before
    store.unlink()                                   # the operator moves the broken store aside
    p = subprocess.run(command(ws), cwd=ws, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and "deployed release 2" in p.stdout, p.stdout + p.stderr
    check_done(ws, drops)


def test_a_run_killed_between_the_store_commit_and_its_exports_leaves_them_to_the_next_tick(template, tmp_path):
    """Killed after the store's manifest names the new batches but before finaldata.csv and ingestedfiles.txt are
    written, a run leaves the exports as the previous commit left them: the next tick must bring them up to date
    (and the release it deploys must list every ingested file)."""
    ws = killed_right_after(template, tmp_path, "os.rename ingesteddata/store/manifest.json")
    drops = shipped_drops(ws)
    check_whole(ws, drops)
    p = subprocess.run(command(ws), cwd=ws, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and "deployed release 2" in p.stdout, p.stdout + p.stderr
    check_done(ws, drops)
    listed = (ws / "production_deployment" / "current" / "ingestedfiles.txt").read_text().splitlines()
    assert sorted(listed) == sorted(drops.good)
