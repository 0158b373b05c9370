//! What can be wrong with a `keys.json` sidecar, as a typed problem with a
//! stable [`SidecarProblem::code`] (exposed to Python as
//! `SidecarError.code`, as `RejectReason` is for the rules), and the error
//! that carries it with the sidecar's path. The human text is the
//! problem's `Display`; no code edits it afterwards.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::wire::Purpose;

/// One problem with a sidecar: its file, its document, or a use of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidecarProblem {
    // ---- the file
    /// The file could not be opened (other than not existing).
    CannotOpen(String),
    /// Not a regular file (a FIFO, a directory, a device).
    NotRegularFile,
    /// Larger than [`super::MAX_SIDECAR_BYTES`] (at least `size` bytes).
    TooLarge { size: u64 },
    /// The file could not be read.
    CannotRead(String),
    // ---- the document
    /// Not JSON at all (serde_json's reason).
    NotJson(String),
    /// JSON, but not an object at the top level.
    NotAnObject,
    /// A required field is missing (its dotted name, e.g. `keys.3.wrapped`).
    MissingField(String),
    /// A `version` this package does not read (the value as written).
    UnsupportedVersion(String),
    /// A field of the wrong type or out of range.
    BadValue {
        /// Dotted name of the field.
        field: String,
        /// What it must be, e.g. `an integer in 0..=65535`.
        expected: String,
        /// The value as written, when it is worth quoting.
        found: Option<String>,
    },
    /// A key id that is not a canonical decimal u32.
    BadKeyId(String),
    /// Key id 0, which SPEC §5 reserves.
    ReservedKeyId,
    /// `active.<purpose>` names a key that is not in `keys`.
    ActiveNotAKey { purpose: Purpose, dek_id: u32 },
    /// `active.<purpose>` names a key of the other purpose.
    ActiveWrongPurpose { purpose: Purpose, dek_id: u32 },
    /// The document could not be serialised (nothing was written).
    CannotSerialise(String),
    // ---- writing it
    /// A file-system fault before the rename: the old file is untouched.
    NotWritten(String),
    /// A fault after the rename: the new file is in place, not durable.
    NotDurable(String),
    /// The sidecar path could not be made absolute.
    CannotResolvePath(String),
    // ---- start-up uses (local epochs)
    /// There is no sidecar: the cluster is not bootstrapped.
    NotBootstrapped,
    /// The sidecar has no key with this id.
    NoSuchKey { dek_id: u32 },
    /// The Raft layer is cut over, but no Raft key is active.
    RaftCutOverWithoutRaftKey,
}

impl SidecarProblem {
    /// A stable, machine-readable name of the problem.
    pub fn code(&self) -> &'static str {
        match self {
            SidecarProblem::CannotOpen(_) => "cannot_open",
            SidecarProblem::NotRegularFile => "not_regular_file",
            SidecarProblem::TooLarge { .. } => "too_large",
            SidecarProblem::CannotRead(_) => "cannot_read",
            SidecarProblem::NotJson(_) => "not_json",
            SidecarProblem::NotAnObject => "not_an_object",
            SidecarProblem::MissingField(_) => "missing_field",
            SidecarProblem::UnsupportedVersion(_) => "unsupported_version",
            SidecarProblem::BadValue { .. } => "bad_value",
            SidecarProblem::BadKeyId(_) => "bad_key_id",
            SidecarProblem::ReservedKeyId => "reserved_key_id",
            SidecarProblem::ActiveNotAKey { .. } => "active_not_a_key",
            SidecarProblem::ActiveWrongPurpose { .. } => "active_wrong_purpose",
            SidecarProblem::CannotSerialise(_) => "cannot_serialise",
            SidecarProblem::NotWritten(_) => "not_written",
            SidecarProblem::NotDurable(_) => "not_durable",
            SidecarProblem::CannotResolvePath(_) => "cannot_resolve_path",
            SidecarProblem::NotBootstrapped => "not_bootstrapped",
            SidecarProblem::NoSuchKey { .. } => "no_such_key",
            SidecarProblem::RaftCutOverWithoutRaftKey => "raft_cut_over_without_raft_key",
        }
    }

    /// Every code, for the bindings' docs and the tests.
    pub const CODES: [&'static str; 20] = [
        "cannot_open",
        "not_regular_file",
        "too_large",
        "cannot_read",
        "not_json",
        "not_an_object",
        "missing_field",
        "unsupported_version",
        "bad_value",
        "bad_key_id",
        "reserved_key_id",
        "active_not_a_key",
        "active_wrong_purpose",
        "cannot_serialise",
        "not_written",
        "not_durable",
        "cannot_resolve_path",
        "not_bootstrapped",
        "no_such_key",
        "raft_cut_over_without_raft_key",
    ];

    pub(super) fn bad_value(
        field: &str,
        expected: impl Into<String>,
        found: Option<String>,
    ) -> Self {
        SidecarProblem::BadValue {
            field: field.to_owned(),
            expected: expected.into(),
            found,
        }
    }
}

impl fmt::Display for SidecarProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SidecarProblem::CannotOpen(e) => write!(f, "cannot open: {e}"),
            SidecarProblem::NotRegularFile => {
                f.write_str("not a regular file (a sidecar is a JSON file the applier writes)")
            }
            SidecarProblem::TooLarge { size } => write!(
                f,
                "is {size} bytes or more; a sidecar is at most {} bytes",
                super::MAX_SIDECAR_BYTES
            ),
            SidecarProblem::CannotRead(e) => write!(f, "cannot read: {e}"),
            SidecarProblem::NotJson(e) => write!(f, "not valid JSON: {e}"),
            SidecarProblem::NotAnObject => f.write_str("the top level must be a JSON object"),
            SidecarProblem::MissingField(name) => write!(f, "missing \"{name}\""),
            SidecarProblem::UnsupportedVersion(v) => write!(
                f,
                "version {v} is not supported (expected 1 or {})",
                super::SIDECAR_VERSION
            ),
            SidecarProblem::BadValue {
                field,
                expected,
                found,
            } => match found {
                Some(found) => write!(f, "{field} must be {expected}, got {found}"),
                None => write!(f, "{field} must be {expected}"),
            },
            SidecarProblem::BadKeyId(text) => write!(f, "key id {text:?} is not a decimal u32"),
            SidecarProblem::ReservedKeyId => f.write_str("key id \"0\" is reserved"),
            SidecarProblem::ActiveNotAKey { purpose, dek_id } => write!(
                f,
                "active.{} = {dek_id} is not in \"keys\"",
                purpose.as_str()
            ),
            SidecarProblem::ActiveWrongPurpose { purpose, dek_id } => write!(
                f,
                "active.{} = {dek_id} names a {} key",
                purpose.as_str(),
                other(*purpose).as_str()
            ),
            SidecarProblem::CannotSerialise(e) => write!(f, "cannot serialise the sidecar: {e}"),
            SidecarProblem::NotWritten(e) => f.write_str(e),
            SidecarProblem::NotDurable(e) => {
                write!(f, "{e} (the new file is in place, not yet durable)")
            }
            SidecarProblem::CannotResolvePath(e) => write!(f, "cannot resolve the path: {e}"),
            SidecarProblem::NotBootstrapped => {
                f.write_str("no sidecar: the cluster is not bootstrapped")
            }
            SidecarProblem::NoSuchKey { dek_id } => {
                write!(f, "no key dek_id={dek_id} in the sidecar")
            }
            SidecarProblem::RaftCutOverWithoutRaftKey => {
                f.write_str("the Raft layer is cut over but there is no active Raft key")
            }
        }
    }
}

fn other(purpose: Purpose) -> Purpose {
    match purpose {
        Purpose::Storage => Purpose::Raft,
        Purpose::Raft => Purpose::Storage,
    }
}

/// A `keys.json` sidecar that cannot be read, is invalid, or could not be
/// written durably.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sidecar {}: {problem}", path.display())]
pub struct SidecarError {
    pub path: PathBuf,
    pub problem: SidecarProblem,
}

impl SidecarError {
    pub fn new(path: &Path, problem: SidecarProblem) -> SidecarError {
        SidecarError {
            path: path.to_path_buf(),
            problem,
        }
    }

    /// The stable code of the problem.
    pub fn code(&self) -> &'static str {
        self.problem.code()
    }

    /// The human text of the problem (the message without the path).
    pub fn reason(&self) -> String {
        self.problem.to_string()
    }
}
