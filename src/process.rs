//! This process's id, cached. The fork checks (a handle opened by the
//! parent of a `fork()` must not be used in the child) ask for it on every
//! call, and `getpid` is a system call. A forked child stores its own id
//! from a `pthread_atfork` child handler, so the cache is never the
//! parent's in a child; until that handler is in place, every call asks
//! the kernel.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

/// The cached id; meaningful once `STATE` is `READY`.
static PID: AtomicU32 = AtomicU32::new(0);
static STATE: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = 0;
const REGISTERING: u8 = 1;
const READY: u8 = 2;

/// Runs in the child right after `fork()`, before anything else can ask
/// (getpid is async-signal-safe, as a fork handler needs).
extern "C" fn in_child() {
    PID.store(std::process::id(), Ordering::SeqCst);
}

/// This process's id, without a system call once the fork handler is in.
pub fn id() -> u32 {
    if STATE.load(Ordering::Acquire) == READY {
        return PID.load(Ordering::Acquire);
    }
    if STATE
        .compare_exchange(UNSET, REGISTERING, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        // SAFETY: pthread_atfork only records the three pointers; the one
        // given is a plain `extern "C" fn` that stores getpid()'s result.
        let registered = unsafe { libc::pthread_atfork(None, None, Some(in_child)) } == 0;
        if registered {
            PID.store(std::process::id(), Ordering::SeqCst);
            STATE.store(READY, Ordering::Release);
        } else {
            STATE.store(UNSET, Ordering::Release); // no handler: never cache
        }
    }
    // Another thread is registering the handler (or it could not be):
    // until it is in place the cache could miss a fork, so ask.
    std::process::id()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cached_id_is_this_process_and_a_forked_child_gets_its_own() {
        assert_eq!(super::id(), std::process::id());
        assert_eq!(super::id(), std::process::id());
        // SAFETY: the child only calls async-signal-safe functions (getpid
        // through id(), write, _exit) before it exits.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            let ok = super::id() == std::process::id() && super::id() != 0;
            // SAFETY: _exit ends the child without running the parent's
            // destructors or the test harness's.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        let waited = unsafe { libc::waitpid(child, &mut status, 0) };
        assert_eq!(waited, child);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child saw its parent's id"
        );
    }
}
