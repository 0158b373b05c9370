//! What the Python `Applier` adds around the core's write-behind group
//! commit: the `group_commit=` argument, the timer thread that commits a
//! quiet host's staged entries, and the report of an applier dropped
//! without `close()` whose final commit failed (on whatever thread drops
//! it, the timer's included).

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::errors::apply_error_to_py;
use super::handle::Handle;
use super::py_imports::WARN;
use crate::applier::{Applier, GroupCommit};
use crate::error::ApplyError;

/// What an `Applier` dropped without `close()` does when its final commit
/// fails, on whatever thread drops it (the group-commit timer may hold the
/// last reference, without the GIL): what an unclosed file does, a
/// `ResourceWarning`, and the error itself (with its `replay_from`) to
/// `sys.unraisablehook`. With the interpreter gone, stderr.
pub(super) fn report_failed_final_commit(path: &Path, error: &ApplyError) {
    let reported = Python::try_attach(|py| {
        let message = format!(
            "unclosed Applier of {}: its final commit failed, so entries it had acknowledged \
             were lost: {error}",
            path.display()
        );
        let warned = WARN.get(py).and_then(|warn| {
            warn.call1((
                message,
                py.get_type::<pyo3::exceptions::PyResourceWarning>(),
                1,
            ))
        });
        if let Err(raised) = warned {
            // A filter made the warning an error: it is reported too.
            raised.write_unraisable(py, None);
        }
        apply_error_to_py(py, error).write_unraisable(py, None);
    });
    if reported.is_none() {
        eprintln!(
            "encryption-applier: an Applier of {} was dropped and its final commit failed: {error}",
            path.display()
        );
    }
}

/// `group_commit=`: an entry count. A bool is refused: `True` is 1 to
/// Python, and reading "turn group commit on" as one entry per commit
/// would silently give the slowest mode; the new mode is named instead.
fn group_commit_arg(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    let Some(value) = value else { return Ok(None) };
    if value.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "group_commit={} is not an entry count: give the number of entries per commit \
             (group_commit=64), or pipelined=True for write-behind group commit that the disk \
             does not gate (with group_commit=K, the most entries per group; default {})",
            if value.is_truthy()? { "True" } else { "False" },
            crate::applier::DEFAULT_PIPELINE_ENTRIES
        )));
    }
    value.extract::<usize>().map(Some).map_err(|_| {
        PyTypeError::new_err("group_commit must be a positive int (the entries per commit)")
    })
}

/// `pipelined=`, `group_commit=` and `group_commit_ms=` checked together:
/// the pipeline's group size, or group commit's size and delay (or
/// neither).
pub(super) fn write_behind_args(
    group_commit: Option<&Bound<'_, PyAny>>,
    group_commit_ms: Option<f64>,
    pipelined: bool,
) -> PyResult<(Option<usize>, Option<GroupCommit>)> {
    let group_commit = group_commit_arg(group_commit)?;
    let pipeline = match (pipelined, group_commit, group_commit_ms) {
        (false, _, _) => None,
        (true, _, Some(_)) => {
            return Err(PyValueError::new_err(
                "group_commit_ms= has no meaning with pipelined=True: the committer takes \
                 what is staged as soon as the previous commit returns, with no timer",
            ))
        }
        (true, Some(0), _) => return Err(PyValueError::new_err("group_commit must be at least 1")),
        (true, k, None) => Some(k.unwrap_or(crate::applier::DEFAULT_PIPELINE_ENTRIES)),
    };
    let group_commit = if pipelined { None } else { group_commit };
    let group_commit = match (group_commit, group_commit_ms) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(PyValueError::new_err(
                "group_commit_ms= needs group_commit= (the entries per commit)",
            ))
        }
        (Some(0), _) => return Err(PyValueError::new_err("group_commit must be at least 1")),
        (Some(max_entries), ms) => {
            let ms = ms.unwrap_or(DEFAULT_GROUP_COMMIT_MS);
            let max_delay = std::time::Duration::try_from_secs_f64(ms / 1000.0)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "group_commit_ms={ms} is not a positive duration"
                    ))
                })?;
            Some(GroupCommit {
                max_entries,
                max_delay,
            })
        }
    };
    Ok((pipeline, group_commit))
}

/// `Applier.mode`: how it commits, as the keywords that chose it.
pub(super) fn mode_text(pipeline: Option<usize>, group: Option<GroupCommit>, sync: bool) -> String {
    match (pipeline, group) {
        (Some(k), _) => format!("pipelined=True group_commit={k}"),
        (None, Some(g)) => format!(
            "group_commit={} group_commit_ms={}",
            g.max_entries,
            g.max_delay.as_secs_f64() * 1000.0
        ),
        (None, None) if sync => "sync=True".to_owned(),
        (None, None) => "sync=False".to_owned(),
    }
}

/// The delay group commit waits at most when only `group_commit=` is given.
const DEFAULT_GROUP_COMMIT_MS: f64 = 10.0;

/// A thread that commits staged entries once the oldest is `delay` old, so
/// a quiet host is durable within about `delay`. It holds the applier
/// weakly (it ends when the applier is dropped or closed) and runs without
/// the GIL. While it commits it holds the applier strongly: if the Python
/// object goes meanwhile, the applier is dropped on this thread, and its
/// final commit's failure is reported from here
/// ([`report_failed_final_commit`]). `hold` is the tests' way to widen that
/// window (`test_support.hold_timer`).
pub(super) fn start_group_commit_timer(
    handle: &Handle<Applier>,
    delay: Duration,
    hold: Arc<TimerHold>,
) -> PyResult<()> {
    let weak = handle.weak();
    let tick = (delay / 2).max(Duration::from_millis(1));
    std::thread::Builder::new()
        .name("ea-group-commit".into())
        .spawn(move || loop {
            std::thread::sleep(tick);
            let Some(inner) = weak.upgrade() else { return };
            hold.pause_if_asked();
            let mut guard = crate::fsutil::lock(&inner);
            match guard.as_mut() {
                Some(applier) => applier.flush_if_due(),
                None => return,
            }
        })
        .map(drop)
        .map_err(|e| {
            pyo3::exceptions::PyOSError::new_err(format!(
                "cannot start the group-commit timer: {e}"
            ))
        })
}

/// A pause the timer's next tick makes while it holds the applier (before
/// it takes the applier's lock). Only the package's tests ask for one.
#[derive(Default)]
pub(super) struct TimerHold {
    /// The pause asked for, and whether the timer has started it.
    state: Mutex<(Option<Duration>, bool)>,
    started: Condvar,
}

impl TimerHold {
    fn pause_if_asked(&self) {
        let mut state = crate::fsutil::lock(&self.state);
        if let Some(pause) = state.0.take() {
            state.1 = true;
            drop(state);
            self.started.notify_all();
            std::thread::sleep(pause);
        }
    }

    /// Asks the timer's next tick to pause for `pause`, and waits (at most
    /// `within`) until it has begun: whether it did.
    pub(super) fn ask(&self, pause: Duration, within: Duration) -> bool {
        let mut state = crate::fsutil::lock(&self.state);
        *state = (Some(pause), false);
        let (state, _) = self
            .started
            .wait_timeout_while(state, within, |s| !s.1)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.1
    }
}
