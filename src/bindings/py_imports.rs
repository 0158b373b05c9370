//! Every Python object the bindings use, looked up once and cached (as
//! pyca/cryptography's `LazyPyImport` in `types.rs` and polars'
//! `py_modules.rs`): the exception classes of
//! `encryption_applier.exceptions`, the pandas and HTML helpers of
//! `encryption_applier._frames`, the value types of
//! `encryption_applier.results`, `array.array`, `enum.IntEnum`, `datetime`,
//! `warnings.warn`, and the `Purpose` enum the module builds at import.
//! No other binding file calls `py.import`.
//!
//! A lookup that fails (the package is broken, memory runs out) is an
//! exception, retried at the next use; nothing here panics, unlike
//! `pyo3::import_exception!`. The caches hold Python objects in statics,
//! which is sound because the module lives in one interpreter: a forked
//! child has the same one (its objects are at the same addresses), and
//! pyo3 refuses to import the module in a second (sub-)interpreter.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// `module.name`, imported at its first use and kept.
pub(super) struct LazyImport {
    module: &'static str,
    name: &'static str,
    value: PyOnceLock<Py<PyAny>>,
}

impl LazyImport {
    const fn new(module: &'static str, name: &'static str) -> LazyImport {
        LazyImport {
            module,
            name,
            value: PyOnceLock::new(),
        }
    }

    pub(super) fn get<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyAny>> {
        self.value.import(py, self.module, self.name)
    }
}

const FRAMES: &str = "encryption_applier._frames";

/// `Registry.to_pandas()`.
pub(super) static REGISTRY_TO_PANDAS: LazyImport = LazyImport::new(FRAMES, "registry_to_pandas");
/// `Registry._repr_html_()`.
pub(super) static REGISTRY_HTML: LazyImport = LazyImport::new(FRAMES, "registry_html");
/// `Applier._repr_html_()`.
pub(super) static APPLIER_HTML: LazyImport = LazyImport::new(FRAMES, "applier_html");
/// `RegistryDiff.to_pandas()`.
pub(super) static DIFF_TO_PANDAS: LazyImport = LazyImport::new(FRAMES, "diff_to_pandas");
/// `RegistryDiff._repr_html_()`.
pub(super) static DIFF_HTML: LazyImport = LazyImport::new(FRAMES, "diff_html");
/// `SidecarStateReport._repr_html_()` and `ResyncSidecarResponse._repr_html_()`.
pub(super) static STATUS_HTML: LazyImport = LazyImport::new(FRAMES, "status_html");
const RESULTS: &str = "encryption_applier.results";

/// The items of `StorageError.aftermath`.
pub(super) static AFTERMATH: LazyImport = LazyImport::new(RESULTS, "Aftermath");
/// What `diagnose_startup()` returns.
pub(super) static STARTUP_DIAGNOSIS: LazyImport = LazyImport::new(RESULTS, "StartupDiagnosis");
/// `Registry.columns()` builds its columns as `array.array`s.
pub(super) static ARRAY: LazyImport = LazyImport::new("array", "array");
/// The base of `Purpose`.
pub(super) static INT_ENUM: LazyImport = LazyImport::new("enum", "IntEnum");
/// `SidecarKey.created_at` builds a timezone-aware `datetime.datetime`.
pub(super) static DATETIME: LazyImport = LazyImport::new("datetime", "datetime");
pub(super) static TIMEZONE: LazyImport = LazyImport::new("datetime", "timezone");
pub(super) static TIMEDELTA: LazyImport = LazyImport::new("datetime", "timedelta");
/// The `ResourceWarning` of an `Applier` dropped with a failed final commit.
pub(super) static WARN: LazyImport = LazyImport::new("warnings", "warn");

/// `encryption_applier.Purpose`, an `IntEnum` built once by the module's
/// init (`mod.rs`).
pub(super) static PURPOSE_ENUM: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

const EXCEPTIONS: &str = "encryption_applier.exceptions";

/// Declares [`ExceptionClass`]: each variant is named exactly as its
/// Python class, which is its one spelling in Rust.
macro_rules! exception_classes {
    ($($name:ident),* $(,)?) => {
        /// The classes of `encryption_applier.exceptions` that Rust raises.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[allow(clippy::enum_variant_names, reason = "the Python class names end in Error")]
        pub(super) enum ExceptionClass {
            $($name,)*
        }

        /// One cache per class, in the order of the variants.
        static CLASSES: [LazyImport; [$(stringify!($name)),*].len()] =
            [$(LazyImport::new(EXCEPTIONS, stringify!($name))),*];
    };
}

exception_classes! {
    // EncryptionApplyError and its halts.
    EncryptionApplyError,
    KEKNotConfiguredError,
    LocalEpochRollbackError,
    NodeIDCollisionError,
    MalformedPayloadError,
    RegistryCorruptionError,
    StorageError,
    KEKUnwrapError,
    KeyConflictError,
    AlreadyBootstrappedError,
    NotBootstrappedError,
    PayloadRejectedError,
    CutoverHookError,
    SidecarError,
    // StartupRefusedError's refusals.
    SidecarPresentWithoutFlagError,
    KEKRequiredWithFlagError,
    KEKMismatchError,
    LocalEpochExhaustedError,
    UnsupportedFilesystemError,
    StartupNodeIDCollisionError,
    StartupLocalEpochRollbackError,
    EnvelopeCutoverDivergenceError,
    SidecarBehindRaftLogError,
    RaftLogGapUncoveredError,
    WriterUint16CollisionError,
    // The status views'.
    ForeignRegistryRowError,
    // EnvelopeError's.
    EnvelopeShortError,
    EnvelopeVersionError,
    IntegrityError,
    // RegistryOpenError and its subclasses.
    RegistryOpenError,
    DamagedRegistryError,
    UncommittedRegistryError,
    // KEKFileError and its subclass.
    KEKFileError,
    InsecureKEKFileError,
    // An elastickv snapshot that cannot be read.
    SnapshotError,
}

impl ExceptionClass {
    /// The class, imported at its first use.
    pub(super) fn get<'py>(self, py: Python<'py>) -> PyResult<&'py Bound<'py, PyAny>> {
        CLASSES[self as usize].get(py)
    }
}
