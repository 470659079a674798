"""Run untrusted, model-written Python in a separate process with layered defences.

    r = run("print(6 * 7)", timeout=5)     # {'status': 'ok', 'stdout': '42\\n', 'layers': {...}, ...}
    rs = run_many([src1, src2, ...], workers=2)

Each program gets a fresh temporary directory (its cwd, HOME and TMPDIR, deleted afterwards) and runs as
`python -S -s -B -P sandbox_child.py --child CONFIG` (stdlib only, imports little: the child spends ~35 ms of CPU
a program, ~5 ms of it on the uid, tmpfs and seccomp layers). Before the program's first line runs, the child
puts up these layers (each best effort; `r['layers']` says which held and `r['notes']` why one did not):

  1. session: own session and process group (Popen start_new_session); the parent enforces the wall-clock
     timeout, then SIGKILLs the PID namespace's init (see 3) and the whole process group. PR_SET_PDEATHSIG
     kills the sandbox if the evaluator itself dies (its temporary directory then stays behind).
  2. rlimits: RLIMIT_AS (memory), RLIMIT_CPU, RLIMIT_FSIZE (every file written, stdout included),
     RLIMIT_NOFILE, RLIMIT_CORE=0, and RLIMIT_NPROC, which counts only this sandbox's tasks (they alone have its
     uid, see 5, or its user namespace). The kernel never applies RLIMIT_NPROC to uid 0, so when the evaluator
     runs as root a fresh `pids` cgroup (v1, or v2 with the controller delegated) caps the number of tasks as
     well (layer "pids_cgroup"); a fork bomb then stalls at the cap until the timeout.
  3. namespaces: new mount, network, PID and IPC namespaces (made directly as root; otherwise, or as root
     without CAP_SYS_ADMIN, inside a new user namespace that maps the evaluator's own uid and gid). The new
     network namespace has no interface up, so nothing can be reached, not even localhost. The program runs as
     PID 1 of its own PID namespace: it cannot see or signal outside processes, and when it dies (or is killed
     with its group) the kernel kills everything it forked, even children that called setsid().
  4. disk_bound: in the private mount namespace the sandbox directory is a tmpfs of `disk_mb` MiB (plus the
     given files) and 4096 inodes. With landlock (6) allowing writes nowhere else, what a program can put on
     disk is bounded: that tmpfs (RAM, charged to the evaluator's memory cgroup) and stdout/stderr (RLIMIT_FSIZE).
  5. identity: as root, the program runs as uid = gid = 2**31 + the child's PID, which no account and no
     other sandbox uses, with no supplementary groups and no capabilities. It owns nothing outside its
     directory, so it cannot chmod, chown, utime or set extended attributes or flags on any other file, nor
     open files or sockets outside that others may not write. If the interpreter lies below a directory that
     others may not enter (pyenv under /root, 0700), that directory is covered, in the sandbox's mount
     namespace only, by a tmpfs holding bind mounts of the interpreter's directories alone (a note says so).
     A probe checks first that the uid can read them; if not, the program keeps uid 0 without capabilities.
  6. landlock (Linux >= 5.13): creating, writing, deleting, renaming and truncating files is allowed only
     below the sandbox directory (plus writes to /dev/null); TCP bind/connect are denied (ABI >= 4); signals
     and abstract unix sockets are scoped to the sandbox (ABI >= 6). Landlock (ABI <= 7) has no right for
     chmod, chown, utime, extended attributes or connecting to pathname unix sockets: 5 and 7 cover those.
  7. seccomp (x86_64, aarch64): a BPF filter makes chmod, chown, utime(s) and set/remove-xattr (every
     variant), the chattr ioctls, socket(AF_UNIX), io_uring and x32 calls fail with EPERM, and kills a program
     that calls through another ABI (int 0x80). So a program keeping uid 0 (or the evaluator's uid) still cannot change the
     metadata of files it owns outside, nor reach world-writable sockets such as D-Bus's. The price: these
     calls fail on the program's own files too (shutil.copy's copymode raises PermissionError).
  8. privileges: no_new_privs always, and the capability sets emptied with capset(2), so that neither uid 0
     nor the creator of a user namespace keeps any capability, and exec cannot regain one.
  9. guard: a Python-level last layer in the spirit of human-eval's reliability_guard: os.fork/exec/kill/
     remove/chdir/..., shutil.rmtree/move and the subprocess, socket, multiprocessing and ctypes modules are
     disabled. Easy to get around on purpose; the kernel layers above are what hold. `guard=False` turns it
     off (the tests do, to show the kernel layers alone contain the hostile programs).

Known gaps, stated plainly: a program can read every world-readable file (and, if it keeps the evaluator's
uid, the evaluator's files), though it has no network and no unix socket to send them through. Memory held in
pipes, memfds and the tmpfs is not counted by RLIMIT_AS. Without namespaces (no user namespaces for a non-root
evaluator) there is no bounded directory and no new uid; on another architecture, no seccomp filter; as root
without a new uid and without a writable pids cgroup, nothing but the guard bounds a fork bomb before the
timeout. Tested on Linux 6.18, landlock ABI 7, as root, where every layer holds.
"""
import os
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_child.py")

# -----------------------------------------------------------------------------
# parent side


def run(code, timeout=10.0, memory_mb=2048, files=None, max_output=1 << 20, nproc=32, guard=True,
        cpu_s=None, disk_mb=64):
    """Run one program (source text) in a sandbox. `files` = {name: text} written next to it; the program may
    write `disk_mb` MiB (and 4096 files) beside them.

    Returns {'status': 'ok'|'error'|'timeout'|'killed', 'returncode', 'stdout', 'stderr', 'wall_s',
    'layers': {layer: bool}, 'notes': [str], 'workdir'}. 'error' = non-zero exit (e.g. an uncaught
    exception), 'killed' = ended by a signal (CPU limit, SIGKILL), 'timeout' = wall clock ran out."""

    workdir = tempfile.mkdtemp(prefix="nanopref_sandbox_")
    cgroup = _pids_cgroup(os.path.basename(workdir), nproc + 2) if os.getuid() == 0 else None
    out_f, err_f = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # outside workdir: the program can't reach them
    report_r, report_w = os.pipe()
    try:
        with open(os.path.join(workdir, "main.py"), "w") as f:
            f.write(code)
        for name, text in (files or {}).items():
            if os.path.basename(name) != name or name in ("", ".", ".."):
                raise ValueError(f"sandbox file name {name!r} must be a plain file name")
            with open(os.path.join(workdir, name), "w") as f:
                f.write(text)
        # the child's config travels as plain argv words: parsing JSON there would cost an `import re`
        cfg = [workdir, memory_mb, cpu_s or max(1, int(timeout + 1)), max(max_output, 16 << 20), nproc, int(guard),
               report_w, os.pathsep.join(_site_dirs()), cgroup or "-", disk_mb]
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
               "PYTHONHASHSEED": "0",  # same string hashing in every run: set iteration order is reproducible
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        t0 = time.time()
        # -S: skip site.py (its .pth hooks cost ~30 ms a run); the child appends site-packages to sys.path itself
        p = subprocess.Popen([sys.executable, "-S", "-s", "-B", "-P", _CHILD, "--child", *map(str, cfg)],
                             cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out_f, stderr=err_f,
                             pass_fds=(report_w,), start_new_session=True)
        os.close(report_w)
        report_w = None
        try:
            p.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            # Kill the PID namespace's init first: the kernel then kills everything inside and only lets init
            # (and so our child, which waits for it) exit once they are all gone. Hence no process outlives run().
            os.set_blocking(report_r, False)
            early = _read_all(report_r)
            init = [int(line[5:]) for line in early.split("\n") if line.startswith("init=")]
            if init:
                try:
                    os.kill(init[0], signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        _kill_group(p.pid)  # always: without namespaces this is what stops what the program left behind
        returncode = p.wait()
        wall = time.time() - t0
        os.set_blocking(report_r, True)
        report = (early if timed_out else "") + _read_all(report_r)
        stdout, stderr = _read_capped(out_f, max_output), _read_capped(err_f, max_output)
    finally:
        for fd in (report_r, report_w):
            if fd is not None:
                os.close(fd)
        out_f.close()
        err_f.close()
        shutil.rmtree(workdir, ignore_errors=True)
        _remove_cgroup(cgroup)
    lines = report.split("\n")
    head = next((line for line in lines if line.startswith("layers ")), None)
    layers = {k: v == "1" for k, v in (w.split("=") for w in (head or "").split()[1:])}
    notes = [line[6:] for line in lines if line.startswith("note: ")]
    if head is None:
        notes.append("the child did not report its layers (it died before the program ran)")
    if timed_out:
        status = "timeout"
    elif returncode == 0:
        status = "ok"
    elif returncode < 0 or returncode > 128:  # <0: signal seen by Popen; >128: relayed by the PID-ns parent
        status = "killed"
    else:
        status = "error"
    return dict(status=status, returncode=returncode, stdout=stdout, stderr=stderr, wall_s=round(wall, 3),
                layers=layers, notes=notes, workdir=workdir)


def run_many(programs, workers=None, **kwargs):
    """Run many programs with a bounded pool of `workers` concurrent sandboxes; results keep input order.
    `programs` are source strings or dicts of `run` arguments ({'code': ..., 'files': ..., 'timeout': ...})."""
    workers = workers or os.cpu_count() or 1

    def one(prog):
        args = dict(kwargs, **prog) if isinstance(prog, dict) else dict(kwargs, code=prog)
        return run(**args)

    # Threads are enough: each one only waits on its child process. Popen without preexec_fn is thread-safe.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, programs))


_CAPS = None


def capabilities():
    """Which layers hold on this machine (probed once with a trivial program), e.g. for logging."""
    global _CAPS
    if _CAPS is None:
        r = run("pass", timeout=20)
        _CAPS = dict(r["layers"], notes=r["notes"])
    return _CAPS


def _pids_cgroup(name, limit):
    """Make a cgroup capped at `limit` tasks under our own one in the pids hierarchy; None if we cannot."""
    try:
        with open("/proc/self/cgroup") as f:
            entries = [line.rstrip("\n").split(":", 2) for line in f]
        v1 = [path for _, ctrls, path in entries if "pids" in ctrls.split(",")]
        v2 = [path for _, ctrls, path in entries if ctrls == ""]
        if v1:
            base = "/sys/fs/cgroup/pids" + v1[0]
        else:  # cgroup v2: usable only if the pids controller is already delegated to our children
            base = "/sys/fs/cgroup" + (v2[0] if v2 else "/")
            with open(os.path.join(base, "cgroup.subtree_control")) as f:
                if "pids" not in f.read().split():
                    return None
        path = os.path.join(base, name)
        os.mkdir(path)
        with open(os.path.join(path, "pids.max"), "w") as f:
            f.write(str(limit))
        return path
    except OSError:
        return None


def _remove_cgroup(path):
    for _ in range(50):  # the last tasks may still be exiting
        try:
            if path:
                os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_all(fd):
    """Read to EOF (or, on a non-blocking fd, what is there now)."""
    chunks = []
    while True:
        try:
            b = os.read(fd, 65536)
        except BlockingIOError:
            b = b""
        if not b:
            return b"".join(chunks).decode("utf-8", "replace")
        chunks.append(b)


def _read_capped(f, limit):
    f.seek(0)
    return f.read(limit).decode("utf-8", "replace")


def _site_dirs():
    return [d for d in site.getsitepackages() if os.path.isdir(d)]
