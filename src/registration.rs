//! The start-up writer registration decision (elastickv
//! main_encryption_registration.go:185-375, 411-510): given this node's
//! sidecar, the writer registry, its full id and the epochs it pinned at
//! start, what Go decides before it proposes: the 0x03 registrations to
//! propose, "already registered", nothing to do, or a refusal to start.
//! Nothing is written.
//!
//! Go makes two checks, in this order, and stops at a refusal:
//! 1. the Raft key (validateRaftRegistrationStartupEpoch, :185-211, then the
//!    watcher's first tick, :253-305), once the Raft layer is cut over:
//!    its pinned epoch must be strictly above the registry's `last_seen`,
//!    else `ErrLocalEpochRollback`; then it proposes;
//! 2. the storage key (buildProcessStartRegistrationGate, :411-507), once
//!    the storage envelope is active: `>` proposes, `==` is already
//!    registered, `<` refuses (a plain error, no sentinel).
//!
//! Both compare only `last_seen` of the row at `(dek_id, node_id16)`, 0
//! without a row (registryLastSeen, :525-538): whose row it is is not
//! looked at. [`Check::foreign_owner`] says when it is another node's.

use std::fmt;
use std::path::Path;

use crate::registry::RegistryRow;
use crate::sidecar::{self, Sidecar};
use crate::startup::{RegistryLookup, StartupError};
use crate::store::RegistryError;
use crate::wire::{node_id16, Purpose, Registration};

/// What the decision is made from.
#[derive(Debug, Clone, Copy)]
pub struct RegistrationInput<'a> {
    /// Go's `w.cipher != nil`: encryption on, with a KEK and a sidecar path.
    pub encryption_enabled: bool,
    /// The sidecar as it is now; `None` when there is no file.
    pub sidecar: Option<&'a Sidecar>,
    pub full_node_id: u64,
    /// The storage epoch this start pinned (`w.epoch`, prepare_epochs).
    pub local_epoch: u16,
    /// The Raft epoch this start pinned (`w.raftEpoch`).
    pub raft_local_epoch: u16,
}

/// Why a key needs no registration at this start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// No cipher is wired (:423, :186 via `w.raftEnvelope == nil`).
    EncryptionDisabled,
    /// No sidecar: not bootstrapped, no envelope (:351-352; the storage
    /// gate sees an empty state cache, :426).
    NoSidecar,
    /// Phase 0: the storage envelope is not cut over yet (:426-427).
    StorageEnvelopeInactive,
    /// No active storage key (:429-431).
    NotBootstrapped,
    /// The Raft layer is not cut over (:356).
    RaftNotCutOver,
    /// Cut over, but no active Raft key (:356; Go's wiring refuses such a
    /// sidecar before, main_encryption_write_wiring.go:287-295).
    NoActiveRaftKey,
}

impl Skip {
    pub fn code(self) -> &'static str {
        match self {
            Skip::EncryptionDisabled => "encryption_disabled",
            Skip::NoSidecar => "no_sidecar",
            Skip::StorageEnvelopeInactive => "storage_envelope_inactive",
            Skip::NotBootstrapped => "not_bootstrapped",
            Skip::RaftNotCutOver => "raft_not_cut_over",
            Skip::NoActiveRaftKey => "no_active_raft_key",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Skip::EncryptionDisabled => "encryption is off",
            Skip::NoSidecar => "there is no sidecar (not bootstrapped)",
            Skip::StorageEnvelopeInactive => "the storage envelope is not active yet (phase 0)",
            Skip::NotBootstrapped => "there is no active storage key (not bootstrapped)",
            Skip::RaftNotCutOver => "the Raft layer is not cut over",
            Skip::NoActiveRaftKey => "the Raft layer is cut over but has no active key",
        }
    }
}

/// What Go does for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Skip(Skip),
    /// Go proposes this registration.
    Register(Registration),
    /// The registry's `last_seen` equals the pinned epoch: nothing to
    /// propose (storage only, :456-470).
    AlreadyRegistered,
    /// Go refuses to start.
    Refuse,
    /// Go never got here: for the storage key, the Raft check refused; for
    /// the Raft key (its check passed), the storage check refused before
    /// Go started the watcher that proposes (:140-144).
    NotReached,
}

impl Verdict {
    pub fn code(&self) -> &'static str {
        match self {
            Verdict::Skip(_) => "skip",
            Verdict::Register(_) => "register",
            Verdict::AlreadyRegistered => "already-registered",
            Verdict::Refuse => "refuse",
            Verdict::NotReached => "not-reached",
        }
    }
}

/// One of the two checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub purpose: Purpose,
    /// The active key of this purpose that was checked; 0 when skipped
    /// before one was looked at.
    pub dek_id: u32,
    pub full_node_id: u64,
    /// The pinned epoch Go compares for this purpose.
    pub local_epoch: u16,
    /// The row at `(dek_id, node_id16(full_node_id))`, whoever owns it.
    pub row: Option<RegistryRow>,
    pub verdict: Verdict,
}

impl Check {
    fn new(purpose: Purpose, input: &RegistrationInput<'_>, verdict: Verdict) -> Check {
        Check {
            purpose,
            dek_id: 0,
            full_node_id: input.full_node_id,
            local_epoch: match purpose {
                Purpose::Storage => input.local_epoch,
                Purpose::Raft => input.raft_local_epoch,
            },
            row: None,
            verdict,
        }
    }

    pub fn node_id16(&self) -> u16 {
        node_id16(self.full_node_id)
    }

    /// What Go compares the epoch with: the row's `last_seen`, 0 without
    /// a row (:530-531).
    pub fn last_seen(&self) -> u16 {
        self.row.map_or(0, |r| r.last_seen_local_epoch)
    }

    /// The full id of the row's owner when it is not this node (Go does not
    /// look; a registration it proposes then halts every replica with a
    /// node-id collision when applied).
    pub fn foreign_owner(&self) -> Option<u64> {
        self.row
            .map(|r| r.full_node_id)
            .filter(|&owner| owner != self.full_node_id)
    }

    /// The Go error name a refusal wraps: the Raft check's is
    /// `ErrLocalEpochRollback`, the storage check's is none.
    pub fn sentinel(&self) -> Option<&'static str> {
        match (self.verdict, self.purpose) {
            (Verdict::Refuse, Purpose::Raft) => Some("ErrLocalEpochRollback"),
            _ => None,
        }
    }

    fn ids(&self) -> String {
        format!(
            "dek_id={} full_node_id=0x{:016x} node_id16=0x{:04x}",
            self.dek_id,
            self.full_node_id,
            self.node_id16()
        )
    }

    fn owner_note(&self) -> String {
        match self.foreign_owner() {
            Some(owner) => format!(
                "; the row under node_id16=0x{:04x} belongs to full_node_id=0x{owner:016x}",
                self.node_id16()
            ),
            None => String::new(),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let purpose = self.purpose.as_str();
        let (epoch, last) = (self.local_epoch, self.last_seen());
        match self.verdict {
            Verdict::Skip(why) => write!(f, "{purpose}: nothing to register: {}", why.describe()),
            Verdict::NotReached => match self.purpose {
                Purpose::Storage => write!(f, "{purpose}: not reached (the Raft check refused)"),
                Purpose::Raft => write!(
                    f,
                    "{purpose}: not proposed (the storage check refused before the Raft watcher \
                     started)"
                ),
            },
            Verdict::Register(_) => write!(
                f,
                "{purpose}: register {} local_epoch={epoch} (registry last_seen={last}{}){}",
                self.ids(),
                if self.row.is_none() { ", no row" } else { "" },
                self.owner_note()
            ),
            Verdict::AlreadyRegistered => write!(
                f,
                "{purpose}: already registered: {} local_epoch={epoch} equals registry \
                 last_seen={last}{}{}",
                self.ids(),
                if self.row.is_none() { " (no row)" } else { "" },
                self.owner_note()
            ),
            Verdict::Refuse => match self.purpose {
                Purpose::Raft => write!(
                    f,
                    "ErrLocalEpochRollback: raft writer registration: local_epoch={epoch} is not \
                     ahead of registry last_seen={last} for {}{}",
                    self.ids(),
                    self.owner_note()
                ),
                Purpose::Storage => write!(
                    f,
                    "storage writer registration: local_epoch={epoch} is behind registry \
                     last_seen={last} for {} (a stale sidecar past the rollback guard){}",
                    self.ids(),
                    self.owner_note()
                ),
            },
        }
    }
}

/// What the whole decision comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// At least one registration to propose ([`Decision::entries`]).
    Register,
    /// Nothing to propose, the storage key being registered at its epoch.
    AlreadyRegistered,
    /// Nothing to propose: neither key is in scope.
    Skip,
    /// Go refuses to start; nothing is proposed.
    Refuse,
}

impl Action {
    pub fn code(self) -> &'static str {
        match self {
            Action::Register => "register",
            Action::AlreadyRegistered => "already-registered",
            Action::Skip => "skip",
            Action::Refuse => "refuse",
        }
    }
}

/// Go's decision: the Raft check, then the storage check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub raft: Check,
    pub storage: Check,
}

impl Decision {
    /// The checks in Go's order.
    pub fn checks(&self) -> [&Check; 2] {
        [&self.raft, &self.storage]
    }

    pub fn action(&self) -> Action {
        if self.refusal().is_some() {
            Action::Refuse
        } else if !self.entries().is_empty() {
            Action::Register
        } else if self.storage.verdict == Verdict::AlreadyRegistered {
            Action::AlreadyRegistered
        } else {
            Action::Skip
        }
    }

    /// The check that refused, if one did.
    pub fn refusal(&self) -> Option<&Check> {
        self.checks()
            .into_iter()
            .find(|c| c.verdict == Verdict::Refuse)
    }

    /// The registrations Go proposes, storage first (its goroutine starts
    /// first, :498-501; the Raft watcher's after, :144).
    pub fn entries(&self) -> Vec<Registration> {
        [&self.storage, &self.raft]
            .into_iter()
            .filter_map(|c| match c.verdict {
                Verdict::Register(r) => Some(r),
                _ => None,
            })
            .collect()
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(refused) = self.refusal() {
            return write!(f, "{refused}");
        }
        write!(f, "{}; {}", self.raft, self.storage) // Go's order
    }
}

/// Go's decision, reading the registry through `registry` (`None`: no
/// registry on disk, so no rows).
pub fn decide(
    input: &RegistrationInput<'_>,
    registry: Option<&dyn RegistryLookup>,
) -> Result<Decision, RegistryError> {
    let mut raft = raft_check(input, registry)?;
    let storage = if raft.verdict == Verdict::Refuse {
        Check::new(Purpose::Storage, input, Verdict::NotReached)
    } else {
        storage_check(input, registry)?
    };
    if storage.verdict == Verdict::Refuse && matches!(raft.verdict, Verdict::Register(_)) {
        // The Raft watcher that proposes starts only past the storage gate.
        raft.verdict = Verdict::NotReached;
    }
    Ok(Decision { raft, storage })
}

/// [`decide`], with the sidecar read from `path` (strictly: an invalid
/// file is an error, as Go's ReadSidecar, :349-355).
pub fn decide_at(
    sidecar_path: &Path,
    encryption_enabled: bool,
    full_node_id: u64,
    epochs: (u16, u16),
    registry: Option<&dyn RegistryLookup>,
) -> Result<Decision, StartupError> {
    let sidecar = if encryption_enabled {
        sidecar::read(sidecar_path)?
    } else {
        None // Go does not read it (:186, :423)
    };
    let input = RegistrationInput {
        encryption_enabled,
        sidecar: sidecar.as_ref(),
        full_node_id,
        local_epoch: epochs.0,
        raft_local_epoch: epochs.1,
    };
    Ok(decide(&input, registry)?)
}

fn row_at(
    registry: Option<&dyn RegistryLookup>,
    dek_id: u32,
    full: u64,
) -> Result<Option<RegistryRow>, RegistryError> {
    match registry {
        Some(r) => r.row(dek_id, node_id16(full)),
        None => Ok(None),
    }
}

/// Check 1 (:185-211, :253-305, :348-360).
fn raft_check(
    input: &RegistrationInput<'_>,
    registry: Option<&dyn RegistryLookup>,
) -> Result<Check, RegistryError> {
    let skip = |why| Ok(Check::new(Purpose::Raft, input, Verdict::Skip(why)));
    if !input.encryption_enabled {
        return skip(Skip::EncryptionDisabled);
    }
    let Some(sc) = input.sidecar else {
        return skip(Skip::NoSidecar);
    };
    if sc.raft_cutover_index().is_none() {
        return skip(Skip::RaftNotCutOver);
    }
    if sc.active_raft == 0 {
        return skip(Skip::NoActiveRaftKey);
    }
    let mut check = Check::new(Purpose::Raft, input, Verdict::Refuse);
    check.dek_id = sc.active_raft;
    check.row = row_at(registry, check.dek_id, input.full_node_id)?;
    // :205 refuses `epoch <= last_seen`; past it, the watcher's tick finds
    // no row of this node at exactly the epoch (:272, :557-573) and its
    // `>=` check (:362-369) passes, so it proposes (:293).
    if check.local_epoch > check.last_seen() {
        check.verdict = Verdict::Register(Registration {
            dek_id: check.dek_id,
            full_node_id: input.full_node_id,
            local_epoch: check.local_epoch,
        });
    }
    Ok(check)
}

/// Check 2 (:411-507).
fn storage_check(
    input: &RegistrationInput<'_>,
    registry: Option<&dyn RegistryLookup>,
) -> Result<Check, RegistryError> {
    let skip = |why| Ok(Check::new(Purpose::Storage, input, Verdict::Skip(why)));
    if !input.encryption_enabled {
        return skip(Skip::EncryptionDisabled);
    }
    let Some(sc) = input.sidecar else {
        return skip(Skip::NoSidecar);
    };
    if !sc.storage_envelope_active {
        return skip(Skip::StorageEnvelopeInactive);
    }
    if sc.active_storage == 0 {
        return skip(Skip::NotBootstrapped);
    }
    let mut check = Check::new(Purpose::Storage, input, Verdict::AlreadyRegistered);
    check.dek_id = sc.active_storage;
    check.row = row_at(registry, check.dek_id, input.full_node_id)?;
    let last_seen = check.last_seen();
    check.verdict = match check.local_epoch.cmp(&last_seen) {
        std::cmp::Ordering::Equal => Verdict::AlreadyRegistered,
        std::cmp::Ordering::Less => Verdict::Refuse,
        std::cmp::Ordering::Greater => Verdict::Register(Registration {
            dek_id: check.dek_id,
            full_node_id: input.full_node_id,
            local_epoch: check.local_epoch,
        }),
    };
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const ME: u64 = 0x0000_0001_aaaa_0001;
    const OTHER: u64 = 0x0000_0002_aaaa_0001; // same node_id16 as ME

    /// Rows by `(dek_id, node_id16)`, counting the look-ups.
    #[derive(Default)]
    struct Rows(Vec<RegistryRow>, RefCell<usize>);

    impl RegistryLookup for Rows {
        fn row(&self, dek_id: u32, n16: u16) -> Result<Option<RegistryRow>, RegistryError> {
            *self.1.borrow_mut() += 1;
            Ok(self
                .0
                .iter()
                .find(|r| r.dek_id == dek_id && r.node_id16 == n16)
                .copied())
        }
        fn applied_index(&self) -> Result<Option<u64>, RegistryError> {
            Ok(None)
        }
    }

    fn row(dek_id: u32, full: u64, last: u16) -> RegistryRow {
        RegistryRow {
            dek_id,
            node_id16: node_id16(full),
            full_node_id: full,
            first_seen_local_epoch: 0,
            last_seen_local_epoch: last,
        }
    }

    fn sidecar(envelope: bool, raft_cutover: u64) -> Sidecar {
        Sidecar {
            storage_envelope_active: envelope,
            raft_envelope_cutover_index: raft_cutover,
            active_storage: 1,
            active_raft: 2,
            ..Sidecar::default()
        }
    }

    fn run(sc: Option<&Sidecar>, rows: &Rows, epochs: (u16, u16)) -> Decision {
        let input = RegistrationInput {
            encryption_enabled: true,
            sidecar: sc,
            full_node_id: ME,
            local_epoch: epochs.0,
            raft_local_epoch: epochs.1,
        };
        decide(&input, Some(rows)).expect("decide")
    }

    #[test]
    fn storage_compares_last_seen() {
        let sc = sidecar(true, 0);
        let d = run(Some(&sc), &Rows::default(), (1, 0));
        assert_eq!(d.action(), Action::Register);
        assert_eq!(
            d.entries(),
            vec![Registration {
                dek_id: 1,
                full_node_id: ME,
                local_epoch: 1
            }]
        );
        assert_eq!(d.raft.verdict, Verdict::Skip(Skip::RaftNotCutOver));
        let rows = Rows(vec![row(1, ME, 4)], RefCell::default());
        assert_eq!(
            run(Some(&sc), &rows, (4, 0)).action(),
            Action::AlreadyRegistered
        );
        let d = run(Some(&sc), &rows, (3, 0));
        assert_eq!(d.action(), Action::Refuse);
        assert_eq!(d.refusal().map(Check::sentinel), Some(None));
        assert!(d.entries().is_empty());
        // Go looks at last_seen only: another node's row at the epoch is
        // "already registered", and epoch 0 without a row too.
        let foreign = Rows(vec![row(1, OTHER, 4)], RefCell::default());
        let d = run(Some(&sc), &foreign, (4, 0));
        assert_eq!(
            (d.action(), d.storage.foreign_owner()),
            (Action::AlreadyRegistered, Some(OTHER))
        );
        assert_eq!(
            run(Some(&sc), &Rows::default(), (0, 0)).action(),
            Action::AlreadyRegistered
        );
    }

    #[test]
    fn skips_in_go_order() {
        let rows = Rows::default();
        assert_eq!(run(None, &rows, (1, 1)).action(), Action::Skip);
        assert_eq!(
            run(Some(&sidecar(false, 0)), &rows, (1, 0)).storage.verdict,
            Verdict::Skip(Skip::StorageEnvelopeInactive)
        );
        let mut sc = sidecar(true, 0);
        sc.active_storage = 0;
        assert_eq!(
            run(Some(&sc), &rows, (0, 0)).storage.verdict,
            Verdict::Skip(Skip::NotBootstrapped)
        );
        let input = RegistrationInput {
            encryption_enabled: false,
            sidecar: Some(&sc),
            full_node_id: ME,
            local_epoch: 1,
            raft_local_epoch: 1,
        };
        let d = decide(&input, Some(&rows)).expect("decide");
        assert_eq!(d.storage.verdict, Verdict::Skip(Skip::EncryptionDisabled));
        assert_eq!(
            *rows.1.borrow(),
            0,
            "nothing is read when no key is in scope"
        );
    }

    #[test]
    fn raft_needs_a_strictly_newer_epoch_and_comes_first() {
        let sc = sidecar(true, 9);
        let rows = Rows(vec![row(2, ME, 3)], RefCell::default());
        let d = run(Some(&sc), &rows, (1, 4));
        assert_eq!(d.action(), Action::Register);
        assert_eq!(
            d.entries(),
            vec![
                Registration {
                    dek_id: 1,
                    full_node_id: ME,
                    local_epoch: 1
                },
                Registration {
                    dek_id: 2,
                    full_node_id: ME,
                    local_epoch: 4
                }
            ]
        );
        let d = run(Some(&sc), &rows, (1, 3));
        assert_eq!(d.action(), Action::Refuse);
        assert_eq!(d.raft.sentinel(), Some("ErrLocalEpochRollback"));
        assert_eq!(d.storage.verdict, Verdict::NotReached);
        assert!(d
            .to_string()
            .contains("local_epoch=3 is not ahead of registry last_seen=3"));
        // Raft epoch 0 without a row is refused too (0 <= 0).
        assert_eq!(
            run(Some(&sc), &Rows::default(), (1, 0)).action(),
            Action::Refuse
        );
    }
}
