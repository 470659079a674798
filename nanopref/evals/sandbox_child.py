"""The child side of nanopref.evals.sandbox, run as `python -S -s -B -P sandbox_child.py --child ...` in the
sandbox directory: it puts up the layers described in sandbox.py, reports which held on an inherited pipe, then
runs main.py. Stdlib only, and few imports, because it starts once per program."""
import ctypes
import os
import resource
import signal
import struct
import sys

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 1 << 17, 1 << 27, 1 << 28, 1 << 29, 1 << 30
PR_SET_PDEATHSIG, PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS = 1, 22, 38
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446  # same on all arches
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}
ID_BASE = 0x80000000  # uid = gid = ID_BASE + the child's PID: above every range that accounts are drawn from
MAX_FILES = 4096  # inodes of the sandbox directory's tmpfs
# seccomp denies (EPERM) the calls that change a file's metadata: landlock has no right for them, and a file's
# owner may make them without any capability. Also io_uring, whose requests would bypass the filter.
SECCOMP = {
    # chmod fchmod chown fchown lchown utime setxattr lsetxattr fsetxattr removexattr lremovexattr fremovexattr
    # utimes fchownat futimesat fchmodat utimensat
    "x86_64": dict(arch=0xC000003E, socket=41, ioctl=16,
                   deny=[90, 91, 92, 93, 94, 132, 188, 189, 190, 197, 198, 199, 235, 260, 261, 268, 280]),
    # setxattr lsetxattr fsetxattr removexattr lremovexattr fremovexattr fchmod fchmodat fchownat fchown utimensat
    "aarch64": dict(arch=0xC00000B7, socket=198, ioctl=29, deny=[5, 6, 7, 14, 15, 16, 52, 53, 54, 55, 88]),
}
SECCOMP_BOTH = [425, 426, 427, 452, 463, 466, 469]  # io_uring_*, fchmodat2, setxattrat, removexattrat, file_setattr
# (call, argument, value) denied too: AF_UNIX sockets (so no connecting to pathname sockets outside) and the
# FS_IOC_SETFLAGS / FS_IOC_FSSETXATTR ioctls (chattr)
SECCOMP_ARGS = [("socket", 0, 1), ("ioctl", 1, 0x40086602), ("ioctl", 1, 0x401C5820)]


def _check(ret, what):
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _prctl(option, arg, arg3=0):
    _check(LIBC.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(arg3), 0, 0), "prctl")


def _mount(source, target, fstype, flags, data=None):
    b = [x.encode() if x else None for x in (source, target, fstype, data)]
    _check(LIBC.mount(b[0], b[1], b[2], ctypes.c_ulong(flags), b[3]), f"mount {target}")


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _namespaces(uid, gid):
    """New mount, net and IPC namespaces: directly as root (the program later drops to an unused uid), else (or as
    root without CAP_SYS_ADMIN) in a new user namespace mapping our own ids. Returns whether it made one."""
    ns = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC
    if uid == 0:
        try:
            _check(LIBC.unshare(ns), "unshare")
            return False
        except OSError:
            pass
    _check(LIBC.unshare(ns | CLONE_NEWUSER), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        _write(f"/proc/self/{name}", text)
    return True


def _expose(paths):
    """Let every uid reach `paths`: a directory above them that others may not enter (/root, 0700, holding python)
    is covered, in our mount namespace, by a tmpfs holding just bind mounts of the paths. Returns those covered."""
    paths = sorted(set(paths))
    paths = [p for p in paths if not any(p.startswith(q + "/") for q in paths)]  # outermost only
    tops = {}
    for p in paths:
        parts = p.split("/")
        for i in range(2, len(parts)):  # /a, /a/b, ... above p
            if not os.stat("/".join(parts[:i])).st_mode & 0o001:  # no search permission for others
                tops.setdefault("/".join(parts[:i]), []).append(p)
                break
    for top, inner in tops.items():
        fds = [os.open(p, os.O_PATH | os.O_CLOEXEC) for p in inner]  # opened before the tmpfs hides them
        _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m")
        for p, fd in zip(inner, fds):
            os.makedirs(p, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC)
            os.close(fd)
    return sorted(tops)


def _unused_identity(workdir, site_dirs):
    """(uid, gid, covered) of an identity no account and no other sandbox uses, which can still enter the sandbox
    directory's parent and read the interpreter's directories (after _expose); OSError if there is none."""
    import grp
    import pwd
    ident = ID_BASE + os.getpid()
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            raise OSError(f"id {ident} belongs to {lookup(ident)[0]}")
        except KeyError:
            pass
    need = [p for p in sys.path + site_dirs + [sys.prefix, sys.base_prefix, os.path.dirname(sys.executable)]
            if p and os.path.isdir(p)]
    covered = _expose(need + [workdir])
    pid = os.fork()  # a probe takes the identity and checks what it can reach
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(ident, ident, ident)
            os.setresuid(ident, ident, ident)
            os._exit(not (os.access(os.path.dirname(workdir), os.X_OK)
                          and all(os.access(p, os.R_OK | os.X_OK) for p in need)))
        finally:
            os._exit(1)
    if os.waitpid(pid, 0)[1]:
        raise OSError(f"uid {ident} cannot read the interpreter's directories {need}")
    return ident, ident, covered


def _bound_workdir(workdir, disk_mb, owner):
    """Replace the sandbox directory by a tmpfs of `disk_mb` MiB (plus room for the files already there) and
    MAX_FILES inodes, owned by `owner`, holding copies of those files."""
    saved = {}
    for name in os.listdir(workdir):
        with open(os.path.join(workdir, name), "rb") as f:
            saved[name] = f.read()
    size = (disk_mb << 20) + sum(len(b) + 8192 for b in saved.values())  # per file: its pages, rounded up
    _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={size},nr_inodes={MAX_FILES},mode=700,uid={owner[0]},gid={owner[1]}")
    os.chdir(workdir)  # the old cwd is the directory now hidden below the mount
    for name, data in saved.items():
        with open(name, "wb") as f:
            f.write(data)
        os.chown(name, *owner)


def _drop_capabilities():
    """capset(2) with empty effective/permitted/inheritable sets (header version 3, two 32-bit data words)."""
    header, data = (ctypes.c_uint32 * 2)(0x20080522, 0), (ctypes.c_uint32 * 6)()
    _check(LIBC.syscall(SYS_CAPSET[os.uname().machine], header, data), "capset")


def _landlock(workdir):
    """Allow file-system changes only below `workdir` (and writes to /dev/null); deny TCP; scope signals."""
    u32, size_t = ctypes.c_uint32, ctypes.c_size_t
    abi = _check(LIBC.syscall(SYS_LANDLOCK_CREATE_RULESET, None, size_t(0), u32(1)), "landlock_create_ruleset")
    # handled file-system rights: everything that changes the file system (reads and execs stay unrestricted)
    write_file, truncate, ioctl_dev = 1 << 1, 1 << 14, 1 << 15
    fs = write_file | sum(1 << i for i in range(4, 13))  # remove_dir/file, make_char/dir/reg/sock/fifo/block/sym
    fs |= (1 << 13 if abi >= 2 else 0) | (truncate if abi >= 3 else 0) | (ioctl_dev if abi >= 5 else 0)  # 13: refer
    net = 0b11 if abi >= 4 else 0  # bind_tcp | connect_tcp, with no port allowed
    scoped = 0b11 if abi >= 6 else 0  # abstract unix sockets | signals
    attr = (ctypes.c_uint64 * 3)(fs, net, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # struct landlock_ruleset_attr grew with the ABI
    ruleset = _check(LIBC.syscall(SYS_LANDLOCK_CREATE_RULESET, attr, size_t(size), u32(0)), "landlock_create_ruleset")
    rules = [(workdir, fs), ("/dev/null", write_file | (fs & (truncate | ioctl_dev)))]  # files take file rights only
    for path, access in rules:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rule = ctypes.create_string_buffer(struct.pack("=Qi", access, fd), 12)  # packed path_beneath_attr
        try:
            _check(LIBC.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, ctypes.c_int(1), rule, u32(0)), f"landlock {path}")
        finally:
            os.close(fd)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _check(LIBC.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, u32(0)), "landlock_restrict_self")
    os.close(ruleset)
    return abi


def _seccomp():
    """Install the SECCOMP lists above as a classic BPF program over (arch, syscall number, arguments)."""
    t = SECCOMP[os.uname().machine]
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    allow, eperm, kill = 0x7FFF0000, 0x00050000 | 1, 0x80000000
    nr, arch = 0, 4  # offsets in struct seccomp_data; args[i] at 16 + 8 i (its low 32 bits: little-endian)
    prog = [(ld, 0, 0, arch), (jeq, 1, 0, t["arch"]), (ret, 0, 0, kill),  # another ABI's numbers (int 0x80): kill
            (ld, 0, 0, nr), (jge, 0, 1, 0x40000000), (ret, 0, 0, eperm)]  # x32 calls
    for n in t["deny"] + SECCOMP_BOTH:
        prog += [(jeq, 0, 1, n), (ret, 0, 0, eperm)]  # (code, jump if true, jump if false, k)
    for name, i, value in SECCOMP_ARGS:
        prog += [(ld, 0, 0, nr), (jeq, 0, 3, t[name]), (ld, 0, 0, 16 + 8 * i), (jeq, 0, 1, value), (ret, 0, 0, eperm)]
    prog.append((ret, 0, 0, allow))
    code = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *ins) for ins in prog))
    fprog = ctypes.create_string_buffer(struct.pack("=HxxxxxxQ", len(prog), ctypes.addressof(code)), 16)
    _prctl(PR_SET_SECCOMP, 2, ctypes.addressof(fprog))  # SECCOMP_MODE_FILTER, allowed under no_new_privs


def _count_tasks(uid):
    """Tasks (threads) the kernel charges to `uid` now: RLIMIT_NPROC is compared with this count."""
    n = 0
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            n += int(fields["Threads"]) if int(fields["Uid"].split()[0]) == uid else 0
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


def _child_main(workdir, memory_mb, cpu_s, fsize, nproc, guard, report_fd, site_dirs, cgroup, disk_mb):
    layers, notes = {}, []

    def layer(name, fn, *args, why=""):  # set up one layer; record whether it held, and if not, why
        try:
            out = fn(*args)
            layers[name] = True
            return out
        except (OSError, KeyError) as e:
            layers[name] = False
            notes.append(f"{name}: {e!r}{why}")

    # If the evaluator dies (even by SIGKILL), so do we, and with us the PID namespace made below.
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    layers["pids_cgroup"] = False  # join it first: every task this program makes is counted against pids.max
    if cgroup != "-":
        layer("pids_cgroup", _write, os.path.join(cgroup, "cgroup.procs"), str(os.getpid()))
    layers["session"] = os.getsid(0) == os.getpid()
    uid, gid = os.getuid(), os.getgid()
    os.umask(0o022)  # while the directories _expose makes must be world-readable
    userns = layer("namespaces", _namespaces, uid, gid, why=": no network/PID isolation, bounded directory or uid")
    identity, owner = None, (uid, gid)
    layers["identity"] = layers["disk_bound"] = False
    if layers["namespaces"]:
        _mount(None, "/", None, MS_REC | MS_PRIVATE)  # must hold: no mount below may reach the evaluator's namespace
        if uid == 0 and not userns:
            identity = layer("identity", _unused_identity, workdir, site_dirs.split(os.pathsep),
                             why=": the program keeps uid 0, without capabilities")
        else:
            notes.append(f"identity: the program keeps the evaluator's uid {uid}, without capabilities")
        if identity:
            owner = identity[:2]
            if identity[2]:
                notes.append(f"{identity[2]} hidden but for the interpreter's directories, which uid {owner[0]} reads")
        layer("disk_bound", _bound_workdir, workdir, disk_mb, owner, why=": only RLIMIT_FSIZE (per file) bounds writes")
        layer("namespaces", _check, LIBC.unshare(CLONE_NEWPID), "unshare", why=": no PID namespace")
    os.umask(0o077)
    mem = memory_mb << 20
    for lim, soft, hard in [(resource.RLIMIT_AS, mem, mem), (resource.RLIMIT_CPU, cpu_s, cpu_s + 1),
                            (resource.RLIMIT_FSIZE, fsize, fsize), (resource.RLIMIT_NOFILE, 256, 256),
                            (resource.RLIMIT_CORE, 0, 0)]:
        resource.setrlimit(lim, (soft, hard))
    layers["rlimits"] = True

    if layers["namespaces"]:
        # A new PID namespace applies to children only: the child (PID 1 inside) runs the program; this process
        # relays its exit status. The parent's killpg kills both; PR_SET_PDEATHSIG takes the inner one with it.
        pid = os.fork()
        if pid:
            os.write(report_fd, f"init={pid}\n".encode())  # the parent kills this PID on timeout
            os.close(report_fd)
            _, status = os.waitpid(pid, 0)
            os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    if identity:  # no supplementary groups; every capability goes with uid 0
        os.setgroups([])
        os.setresgid(owner[1], owner[1], owner[1])
        os.setresuid(owner[0], owner[0], owner[0])
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # again: the fork and the change of uid cleared it

    # RLIMIT_NPROC counts the tasks of our real uid (an unused one, or ours in our user namespace); the kernel
    # never applies it to uid 0, where the pids cgroup caps the tasks instead
    base = 0 if identity or userns else _count_tasks(os.getuid())
    resource.setrlimit(resource.RLIMIT_NPROC, (base + nproc, base + nproc))
    if os.getuid() == 0 and not layers["pids_cgroup"]:
        notes.append("running as root without a pids cgroup: the kernel does not apply RLIMIT_NPROC to uid 0, "
                     "so only the Python guard and the timeout stop a fork bomb")
    # empty what uid 0, or the creator of a user namespace, still holds; no_new_privs (below) keeps it empty
    layer("no_capabilities", _drop_capabilities)
    abi = layer("landlock", _landlock, workdir, why=": only file permissions and the guard stop writes outside")
    if not abi:
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
    elif abi < 6:
        notes.append(f"landlock ABI {abi}: TCP denied from ABI 4, signals scoped from 6 (namespaces still apply)")
    layer("seccomp", _seccomp, why=": only the uid stops chmod/utime/xattr calls and unix sockets")
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


if __name__ == "__main__" and len(sys.argv) == 12 and sys.argv[1] == "--child":
    _w, *_ints, _sites, _cgroup, _disk = sys.argv[2:]
    _child_main(_w, *map(int, _ints), _sites, _cgroup, int(_disk))
