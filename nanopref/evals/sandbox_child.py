"""The child side of nanopref.evals.sandbox, run as `python -S -s -B -P sandbox_child.py --child ...` in the sandbox
directory: it puts up the layers described in sandbox.py (rlimits, namespaces, landlock, no capabilities, the
Python guard), reports which held on an inherited pipe, then runs main.py. Stdlib only, and few imports, because
it starts once per program."""
import os
import resource
import signal
import sys

CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, 0x40000000
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446  # same on all arches
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}


def _libc():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return ctypes, libc


def _check(ret, what):
    if ret < 0:
        import ctypes
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _unshare(flags):
    _, libc = _libc()
    _check(libc.unshare(flags), "unshare")


def _prctl(option, arg):
    ctypes, libc = _libc()
    _check(libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), "prctl")


def _drop_capabilities():
    """capset(2) with empty effective/permitted/inheritable sets (header version 3, two 32-bit data words)."""
    ctypes, libc = _libc()
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(libc.syscall(SYS_CAPSET[os.uname().machine], header, data), "capset")


def _landlock(workdir):
    """Allow file-system changes only below `workdir` (and writes to /dev/null); deny TCP; scope signals."""
    import struct
    ctypes, libc = _libc()
    abi = _check(libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1)),
                 "landlock_create_ruleset(version)")
    # handled file-system rights: everything that changes the file system (reads and execs stay unrestricted)
    write_file, truncate, ioctl_dev = 1 << 1, 1 << 14, 1 << 15
    fs = write_file | sum(1 << i for i in range(4, 13))  # remove_dir/file, make_char/dir/reg/sock/fifo/block/sym
    if abi >= 2:
        fs |= 1 << 13  # refer (rename/link across directories)
    if abi >= 3:
        fs |= truncate
    if abi >= 5:
        fs |= ioctl_dev
    net = 0b11 if abi >= 4 else 0  # bind_tcp | connect_tcp, with no port allowed
    scoped = 0b11 if abi >= 6 else 0  # abstract unix sockets | signals
    attr = (ctypes.c_uint64 * 3)(fs, net, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # struct landlock_ruleset_attr grew with the ABI
    ruleset = _check(libc.syscall(SYS_LANDLOCK_CREATE_RULESET, attr, ctypes.c_size_t(size), ctypes.c_uint32(0)),
                     "landlock_create_ruleset")
    rules = [(workdir, fs), ("/dev/null", write_file | (fs & (truncate | ioctl_dev)))]  # files take file rights only
    for path, access in rules:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rule = ctypes.create_string_buffer(struct.pack("=Qi", access, fd), 12)  # packed path_beneath_attr
        try:
            _check(libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, ctypes.c_int(1), rule, ctypes.c_uint32(0)),
                   f"landlock_add_rule({path})")
        finally:
            os.close(fd)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _check(libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)), "landlock_restrict_self")
    os.close(ruleset)
    return abi


def _count_tasks(uid):
    """Tasks (threads) the kernel charges to `uid` now: RLIMIT_NPROC is compared with this count."""
    n = 0
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                n += int(fields["Threads"])
        except (OSError, ValueError, KeyError):
            continue
    return n


def _python_guard():
    """Last layer: make the obvious destructive calls raise. Not a security boundary by itself."""
    import builtins

    def disabled(name):
        def f(*args, **kwargs):
            raise PermissionError(f"{name} is disabled in the nanopref sandbox")
        return f

    for name in ("kill killpg system popen fork forkpty posix_spawn posix_spawnp execv execve execvp execvpe "
                 "execl execle execlp execlpe spawnv spawnve spawnvp spawnvpe remove unlink rmdir removedirs "
                 "rename renames replace truncate chmod fchmod lchmod chown fchown lchown chroot chdir fchdir "
                 "link symlink mkfifo mknod setuid seteuid setgid setegid setresuid setresgid setsid setpgid"
                 ).split():
        if hasattr(os, name):
            setattr(os, name, disabled("os." + name))
    # shutil.rmtree/move need no patch of their own: they call the os functions disabled above
    for mod in ("subprocess", "socket", "_socket", "multiprocessing", "ctypes", "_ctypes", "resource", "pty"):
        sys.modules[mod] = None  # `import socket` now raises ImportError
    builtins.help = None


def _child_main(workdir, memory_mb, cpu_s, fsize, nproc, guard, report_fd, site_dirs, cgroup):
    layers, notes = {}, []
    # If the evaluator dies (even by SIGKILL), so do we, and with us the PID namespace made below.
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    layers["pids_cgroup"] = False
    if cgroup != "-":  # join it first: every task this program makes is counted against pids.max
        try:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            layers["pids_cgroup"] = True
        except OSError as e:
            notes.append(f"could not join the pids cgroup ({e})")
    os.umask(0o077)
    mem = memory_mb << 20
    for lim, soft, hard in [(resource.RLIMIT_AS, mem, mem), (resource.RLIMIT_CPU, cpu_s, cpu_s + 1),
                            (resource.RLIMIT_FSIZE, fsize, fsize), (resource.RLIMIT_NOFILE, 256, 256),
                            (resource.RLIMIT_CORE, 0, 0)]:
        resource.setrlimit(lim, (soft, hard))
    layers["rlimits"] = True
    layers["session"] = os.getsid(0) == os.getpid()
    uid = os.getuid()

    # namespaces: new user ns first (unprivileged), with net, PID and IPC in the same call
    try:
        _unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC)
        layers["namespaces"] = True
    except OSError as e:
        layers["namespaces"] = False
        notes.append(f"namespaces unavailable ({e}); no network/PID isolation, relying on rlimits and landlock")
    if layers["namespaces"]:
        # A new PID namespace applies to children only: fork, and let the child (PID 1 inside) run the program.
        # This outer process just relays the exit status; it is in the same process group, so the parent's
        # killpg kills it too, and PR_SET_PDEATHSIG below takes the inner one (and with it the whole namespace).
        pid = os.fork()
        if pid:
            os.write(report_fd, f"init={pid}\n".encode())  # the parent kills this PID on timeout
            os.close(report_fd)
            _, status = os.waitpid(pid, 0)
            os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    # RLIMIT_NPROC: inside a fresh user namespace it counts only our tasks; otherwise all of this uid's tasks
    base = 0 if layers["namespaces"] else _count_tasks(uid)
    resource.setrlimit(resource.RLIMIT_NPROC, (base + nproc, base + nproc))
    if uid == 0 and not layers["pids_cgroup"]:
        notes.append("running as root without a pids cgroup: the kernel does not apply RLIMIT_NPROC to uid 0, "
                     "so only the Python guard and the timeout stop a fork bomb")

    # privileges
    if uid == 0 and not layers["namespaces"]:
        try:
            _drop_capabilities()
            layers["no_capabilities"] = True
        except (OSError, KeyError) as e:
            layers["no_capabilities"] = False
            notes.append(f"could not drop capabilities ({e})")
    else:
        layers["no_capabilities"] = True  # not root, or root whose capabilities stayed in the parent namespace

    try:
        abi = _landlock(workdir)
        layers["landlock"] = True
        if abi < 4:
            notes.append(f"landlock ABI {abi}: no TCP restriction (network namespace still applies)")
        if abi < 6:
            notes.append(f"landlock ABI {abi}: signals not scoped (PID namespace still applies)")
    except OSError as e:
        layers["landlock"] = False
        notes.append(f"landlock unavailable ({e}): writes outside the sandbox dir are stopped only by "
                     "file permissions and the Python guard")
        try:
            _prctl(PR_SET_NO_NEW_PRIVS, 1)
        except OSError:
            pass
    layers["guard"] = bool(guard)
    report = "layers " + " ".join(f"{k}={int(v)}" for k, v in layers.items()) + "\n"
    os.write(report_fd, (report + "".join(f"note: {n}\n" for n in notes)).encode())
    os.close(report_fd)

    with open("main.py") as f:
        source = f.read()
    if guard:
        _python_guard()
    sys.argv = ["main.py"]
    # the program may import helper files written next to it, and installed packages (site.py was skipped)
    sys.path[:0] = [workdir]
    sys.path += [d for d in site_dirs.split(os.pathsep) if d]
    code = compile(source, "main.py", "exec")
    exec(code, {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__})


if __name__ == "__main__" and len(sys.argv) == 11 and sys.argv[1] == "--child":
    _w, *_ints, _sites, _cgroup = sys.argv[2:]
    _child_main(_w, *map(int, _ints), _sites, _cgroup)
