"""What a call costs, counted rather than timed: the fork checks ask for
the process id on every call, and `getpid` is a system call, so the
package caches it (reset in a forked child). Counted with the fsfault
shim, which wraps libc's getpid."""

from pathlib import Path

from fsfault import traced_ok

CALLS = """
import ctypes, os, sys, encryption_applier as ea
count = ctypes.CDLL(None).ea_fs_getpid_calls
count.restype = ctypes.c_long
applier = ea.Applier(sys.argv[1])
entry = ea.Registration(1, 0xABCD0001, 1).to_entry()
applier.apply(entry, index=1)
view = applier.registry
def per_call(call, n=200):
    call()
    before = count()
    for _ in range(n):
        call()
    return (count() - before) / n
costs = {
    "apply of an applied index": per_call(lambda: applier.apply(entry, index=1)),
    "apply_registration": per_call(lambda: applier.apply_registration(ea.Registration(1, 0xABCD0001, 1))),
    "Registry.get": per_call(lambda: view.get(1, 1)),
    "len(Registry)": per_call(lambda: len(view)),
    "applied_index": per_call(lambda: applier.applied_index),
}
print(repr(costs))
pid = os.fork()
if pid == 0:
    # The cached id is the child's own: the parent's handles are refused,
    # and a registry the child opens works.
    try:
        view.get(1, 1)
        os._exit(3)
    except ea.StorageError:
        pass
    with ea.Registry(sys.argv[1]) as own:
        os._exit(0 if own.get(1, 1) is not None else 4)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""


def test_calls_make_no_getpid_system_call(tmp_path: Path) -> None:
    base = tmp_path.resolve()
    run = traced_ok(CALLS, str(base / "registry"), under=base)
    lines = run.proc.stdout.splitlines()
    costs = eval(lines[0])  # a dict literal printed by the child
    assert costs == dict.fromkeys(costs, 0.0), costs
    assert lines[1] == "child 0", run.proc.stdout


def test_apply_many_reuses_its_buffers(tmp_path: Path) -> None:
    """A 10k-entry run needs about a megabyte of working memory; allocated
    afresh it is handed back to the kernel and faulted in again on every
    call (about 580 minor page faults each, measured). Kept by the applier,
    a warm call faults almost nothing in."""
    import resource

    import encryption_applier as ea

    rounds = [[ea.Registration(1 + n % 10, (n << 16) | n, r + 1).to_entry() for n in range(10_000)] for r in range(8)]
    with ea.Applier(tmp_path / "registry", sync=False) as applier:
        for batch in rounds[:3]:
            applier.apply_many(batch)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for batch in rounds[3:]:
            applier.apply_many(batch)
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / len(rounds[3:])
    assert faults < 100, f"{faults:.0f} minor page faults per 10k-entry apply_many"
