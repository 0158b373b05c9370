//! A structural check of `data.mdb`, made with positional reads of the
//! file and never through LMDB's map.
//!
//! LMDB trusts its file: a page number past the end of a truncated file is
//! a SIGBUS when touched through the map, a zeroed page trips an assertion
//! (SIGABRT), a node whose size field is huge makes a copy read far past
//! its page, and a main database opened with flags it was not written with
//! (`MDB_DUPSORT`, `MDB_REVERSEKEY`, `MDB_INTEGERKEY`) reads rows wrongly
//! or crashes. None of that can be caught once LMDB runs into it, so every
//! open checks first, on the bytes of the file:
//!
//! 1. [`read_header`], before LMDB maps the file: both meta pages (magic,
//!    version, page size), and the database flags of the meta LMDB will
//!    use;
//! 2. [`walk`], with a read transaction pinning the snapshot: every page
//!    reachable from that meta, in the main tree and the free-page tree,
//!    is inside the file, of the expected type and not reached twice; every
//!    node lies within its page, keys are in order within and across
//!    pages, all leaves are at the recorded depth, the page and entry
//!    counts match the meta, and no page listed as free is also in use.
//!
//! Damage in a *meta page* is only partly detectable: meta pages carry no
//! checksum. A meta whose transaction id is damaged downwards makes LMDB
//! use the other meta, the previous commit, whose tree is intact: the
//! registry then reads as it was one commit earlier (as after a crash
//! before that commit), and a replay from `applied_index + 1` converges.
//! A damaged root, count, flag or size field is caught here.

use std::cmp::Ordering;
use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;

use std::path::Path;

use crate::fsutil::{open_for_reading, Follow};
use crate::registry::{decode_row, REGISTRY_PREFIX};

use super::txn::APPLIED_INDEX_KEY;

/// LMDB's on-disk constants (mdb.c, 0.9.x, 64-bit).
const PAGE_HEADER: usize = 16;
const NODE_HEADER: usize = 8;
const META_SIZE: usize = 136;
const MDB_MAGIC: u32 = 0xBEEF_C0DE;
const MDB_DATA_VERSION: u32 = 1;
const P_INVALID: u64 = u64::MAX;
const P_BRANCH: u16 = 0x01;
const P_LEAF: u16 = 0x02;
const P_OVERFLOW: u16 = 0x04;
const P_META: u16 = 0x08;
const F_BIGDATA: u16 = 0x01;
const F_SUBDATA: u16 = 0x02;
const F_DUPDATA: u16 = 0x04;
const NUM_METAS: u64 = 2;
const MIN_PAGE_SIZE: u32 = 512;
const MAX_PAGE_SIZE: u32 = 0x8000;
/// Deeper than any tree of a 2^47-byte file can be.
const MAX_DEPTH: u16 = 40;

/// The flags the package's databases have: none on the main database,
/// `MDB_INTEGERKEY` on LMDB's free-page database (which also holds the
/// environment's persistent flags, of which the package sets none).
const MAIN_DB_FLAGS: u16 = 0;
const FREE_DB_FLAGS: u16 = 0x08;
const MDB_NOSUBDIR: u16 = 0x4000;

const FLAG_NAMES: [(u16, &str); 8] = [
    (0x01, "MDB_FIXEDMAP"),
    (0x02, "MDB_REVERSEKEY"),
    (0x04, "MDB_DUPSORT"),
    (0x08, "MDB_INTEGERKEY"),
    (0x10, "MDB_DUPFIXED"),
    (0x20, "MDB_INTEGERDUP"),
    (0x40, "MDB_REVERSEDUP"),
    (0x4000, "MDB_NOSUBDIR"),
];

fn flag_names(flags: u16) -> String {
    let mut names: Vec<String> = FLAG_NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| (*name).to_owned())
        .collect();
    let known = FLAG_NAMES.iter().fold(0, |acc, (bit, _)| acc | bit);
    if flags & !known != 0 {
        names.push(format!("0x{:04x}", flags & !known));
    }
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join("|")
    }
}

/// What is wrong, as a stable code (exposed to Python as `.problem`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// A page the tree needs lies past the end of the file.
    Truncated,
    /// A meta page that LMDB would refuse or misread.
    Meta,
    /// Database flags other than the ones the package creates.
    DbFlags,
    /// A page number outside the file's pages, or reached twice.
    PageNumber,
    /// A page header that does not match its place (number, type).
    PageHeader,
    /// A node or its key or value outside its page, or nodes overlapping.
    NodeBounds,
    /// Keys out of order within a page or across pages.
    KeyOrder,
    /// Leaves at different depths, or a branch too small to be LMDB's.
    TreeShape,
    /// Page or entry counts that differ from the meta's.
    Counts,
    /// A free-page list that is malformed or lists a page in use.
    FreeList,
    /// A stored row that does not decode (found by a full verify only).
    Row,
    /// The file could not be read.
    Io,
}

impl DamageKind {
    pub fn code(&self) -> &'static str {
        match self {
            DamageKind::Truncated => "truncated",
            DamageKind::Meta => "meta",
            DamageKind::DbFlags => "db_flags",
            DamageKind::PageNumber => "page_number",
            DamageKind::PageHeader => "page_header",
            DamageKind::NodeBounds => "node_bounds",
            DamageKind::KeyOrder => "key_order",
            DamageKind::TreeShape => "tree_shape",
            DamageKind::Counts => "counts",
            DamageKind::FreeList => "free_list",
            DamageKind::Row => "row",
            DamageKind::Io => "io",
        }
    }
}

/// One problem found in `data.mdb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The page where it was found, when it is one page's.
    pub page: Option<u64>,
    pub kind: DamageKind,
    pub detail: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.page {
            Some(page) => write!(f, "page {page}: {}", self.detail),
            None => f.write_str(&self.detail),
        }
    }
}

pub(crate) fn damage(page: Option<u64>, kind: DamageKind, detail: impl Into<String>) -> Damage {
    Damage {
        page,
        kind,
        detail: detail.into(),
    }
}

/// One of the two database records of a meta page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbRecord {
    pub flags: u16,
    pub depth: u16,
    pub branch_pages: u64,
    pub leaf_pages: u64,
    pub overflow_pages: u64,
    pub entries: u64,
    pub root: u64,
}

/// A decoded meta page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// 0 or 1: where it was read.
    pub slot: u64,
    pub page_size: u32,
    pub free: DbRecord,
    pub main: DbRecord,
    pub last_page: u64,
    pub txnid: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(bytes)
}

fn db_record(b: &[u8], at: usize) -> DbRecord {
    DbRecord {
        flags: u16_at(b, at + 4),
        depth: u16_at(b, at + 6),
        branch_pages: u64_at(b, at + 8),
        leaf_pages: u64_at(b, at + 16),
        overflow_pages: u64_at(b, at + 24),
        entries: u64_at(b, at + 32),
        root: u64_at(b, at + 40),
    }
}

/// Opens `data.mdb` for reading: never through a symlink, never blocking.
pub fn open_data_file(path: &Path) -> std::io::Result<File> {
    let (file, meta) = open_for_reading(path, Follow::NoSymlinks)?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other("data.mdb is not a regular file"));
    }
    Ok(file)
}

fn read_at(file: &File, buf: &mut [u8], offset: u64, page: Option<u64>) -> Result<(), Damage> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            damage(
                page,
                DamageKind::Truncated,
                "the file ends inside this page",
            )
        } else {
            damage(page, DamageKind::Io, format!("cannot read: {e}"))
        }
    })
}

fn parse_meta(slot: u64, page: &[u8]) -> Result<Meta, Damage> {
    let here = Some(slot);
    let flags = u16_at(page, 10);
    if flags & P_META == 0 {
        return Err(damage(
            here,
            DamageKind::Meta,
            format!("not a meta page (page flags 0x{flags:04x}): not an LMDB file"),
        ));
    }
    let m = PAGE_HEADER;
    let magic = u32_at(page, m);
    if magic != MDB_MAGIC {
        return Err(damage(
            here,
            DamageKind::Meta,
            format!("bad magic 0x{magic:08x}: not an LMDB file"),
        ));
    }
    let version = u32_at(page, m + 4);
    if version != MDB_DATA_VERSION {
        return Err(damage(
            here,
            DamageKind::Meta,
            format!("LMDB data version {version}, expected {MDB_DATA_VERSION}"),
        ));
    }
    let free = db_record(page, m + 24);
    let main = db_record(page, m + 72);
    // The page size lives in the free database's pad field.
    let page_size = u32_at(page, m + 24);
    if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(damage(
            here,
            DamageKind::Meta,
            format!("page size {page_size} is not one LMDB writes"),
        ));
    }
    Ok(Meta {
        slot,
        page_size,
        free,
        main,
        last_page: u64_at(page, m + 120),
        txnid: u64_at(page, m + 128),
    })
}

/// The page size assumed for a file whose meta pages name none.
const DEFAULT_PAGE_SIZE: u64 = 4096;

/// One meta slot of a file that may never have been committed.
enum Slot {
    /// Zero bytes, or past the end of the file: never written durably.
    Blank,
    /// LMDB's initial meta page: transaction 0, both databases empty.
    Initial(u32),
    /// Anything else: a commit, or damage.
    Other,
}

fn classify_slot(bytes: &[u8]) -> Slot {
    if bytes.iter().all(|&b| b == 0) {
        return Slot::Blank;
    }
    if bytes.len() < PAGE_HEADER + META_SIZE {
        return Slot::Other;
    }
    match parse_meta(0, bytes) {
        Ok(m)
            if m.txnid == 0
                && m.last_page == NUM_METAS - 1
                && [m.main, m.free]
                    .iter()
                    .all(|db| db.root == P_INVALID && db.entries == 0 && db.depth == 0) =>
        {
            Slot::Initial(m.page_size)
        }
        _ => Slot::Other,
    }
}

/// Whether `data.mdb` is a creation that no commit ever completed, as a
/// power loss during a registry's creation leaves it, and which LMDB
/// itself cannot open. Exactly: the file is not empty (LMDB initialises an
/// empty one) and is no longer than two pages, so it holds no page a
/// commit writes; each of its two meta slots is blank (all zero, or past
/// the end of the file) or LMDB's initial meta (transaction 0, both
/// databases empty); and not both are initial metas (LMDB opens that file
/// as an empty registry). A registry that ever committed has a leaf page
/// past the metas and a meta of transaction 1 or more, so damage to such a
/// file is never taken for this.
pub fn never_committed(file: &File) -> std::io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    let read = |offset: u64, size: u64| -> std::io::Result<Vec<u8>> {
        let end = (offset + size).min(len);
        let mut buf = vec![0u8; usize::try_from(end.saturating_sub(offset)).unwrap_or(0)];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    };
    let first = classify_slot(&read(0, (PAGE_HEADER + META_SIZE) as u64)?);
    let page_size = match first {
        Slot::Initial(size) => u64::from(size),
        _ => DEFAULT_PAGE_SIZE,
    };
    if len > NUM_METAS * page_size {
        return Ok(false);
    }
    // The rest of each page must be blank too: an initial meta page is its
    // header and meta, then zeros.
    let rest_blank = |slot: u64| -> std::io::Result<bool> {
        let start = slot * page_size + (PAGE_HEADER + META_SIZE) as u64;
        Ok(read(start, page_size - (PAGE_HEADER + META_SIZE) as u64)?
            .iter()
            .all(|&b| b == 0))
    };
    let second = classify_slot(&read(page_size, (PAGE_HEADER + META_SIZE) as u64)?);
    Ok(match (first, second) {
        (Slot::Initial(_), Slot::Initial(_)) | (Slot::Other, _) | (_, Slot::Other) => false,
        (Slot::Initial(a), Slot::Blank) | (Slot::Blank, Slot::Initial(a)) => {
            u64::from(a) == page_size && rest_blank(0)? && rest_blank(1)?
        }
        (Slot::Blank, Slot::Blank) => rest_blank(0)? && rest_blank(1)?,
    })
}

/// Reads both meta pages.
pub fn read_metas(file: &File) -> Result<[Meta; 2], Damage> {
    let mut first = vec![0u8; PAGE_HEADER + META_SIZE];
    read_at(file, &mut first, 0, Some(0))?;
    let meta0 = parse_meta(0, &first)?;
    let mut second = vec![0u8; PAGE_HEADER + META_SIZE];
    read_at(file, &mut second, u64::from(meta0.page_size), Some(1))?;
    let meta1 = parse_meta(1, &second)?;
    if meta0.page_size != meta1.page_size {
        return Err(damage(
            Some(1),
            DamageKind::Meta,
            format!(
                "the meta pages disagree on the page size ({} and {})",
                meta0.page_size, meta1.page_size
            ),
        ));
    }
    Ok([meta0, meta1])
}

/// The meta LMDB uses: the one with the higher transaction id, the first
/// on a tie (as `mdb_env_pick_meta`).
pub fn newest(metas: &[Meta; 2]) -> Meta {
    metas[usize::from(metas[0].txnid < metas[1].txnid)]
}

fn check_db_record(meta: &Meta, db: &DbRecord, name: &str) -> Result<(), Damage> {
    let here = Some(meta.slot);
    if db.depth > MAX_DEPTH {
        return Err(damage(
            here,
            DamageKind::Meta,
            format!("the {name} database claims depth {}", db.depth),
        ));
    }
    if db.root != P_INVALID && (db.root < NUM_METAS || db.root > meta.last_page) {
        return Err(damage(
            here,
            DamageKind::Meta,
            format!(
                "the {name} database's root page {} is outside pages 2..={}",
                db.root, meta.last_page
            ),
        ));
    }
    Ok(())
}

/// The checks that must pass before LMDB maps the file: both meta pages,
/// and the flags and root of the meta LMDB will use.
pub fn read_header(file: &File) -> Result<Meta, Damage> {
    let meta = newest(&read_metas(file)?);
    check_meta(&meta)?;
    Ok(meta)
}

/// The flags, last page and roots of one meta.
pub fn check_meta(meta: &Meta) -> Result<(), Damage> {
    let here = Some(meta.slot);
    if meta.main.flags != MAIN_DB_FLAGS {
        return Err(damage(
            here,
            DamageKind::DbFlags,
            format!(
                "the main database has flags {}; a registry's has none (written by another \
                 program, e.g. mdb_load with dupsort=1?)",
                flag_names(meta.main.flags)
            ),
        ));
    }
    // Also where LMDB keeps the creating environment's flags: MDB_NOSUBDIR
    // (a file made with subdir=False, or by mdb_copy -n) is harmless here.
    if meta.free.flags & !MDB_NOSUBDIR != FREE_DB_FLAGS {
        return Err(damage(
            here,
            DamageKind::DbFlags,
            format!(
                "the environment has flags {}; a registry's has {}",
                flag_names(meta.free.flags),
                flag_names(FREE_DB_FLAGS)
            ),
        ));
    }
    if meta.last_page < NUM_METAS - 1 || meta.last_page > (1u64 << 47) / u64::from(meta.page_size) {
        return Err(damage(
            here,
            DamageKind::Meta,
            format!("last page {} is out of range", meta.last_page),
        ));
    }
    check_db_record(meta, &meta.main, "main")?;
    check_db_record(meta, &meta.free, "free-page")
}

/// What a walk found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// The transaction id of the snapshot walked.
    pub txnid: u64,
    pub page_size: u32,
    /// Whole pages in the file.
    pub file_pages: u64,
    /// The meta's last allocated page.
    pub last_page: u64,
    /// Of the main database, as found.
    pub depth: u16,
    pub entries: u64,
    pub branch_pages: u64,
    pub leaf_pages: u64,
    pub overflow_pages: u64,
    /// Pages on LMDB's free lists.
    pub free_pages: u64,
    pub problems: Vec<Damage>,
    /// What is wrong but harmless: the meta page LMDB does not use (say,
    /// the one a failed meta write left half old, half new), which the
    /// next commit overwrites.
    pub warnings: Vec<Damage>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    Main,
    Free,
}

#[derive(Default)]
struct Counts {
    branch: u64,
    leaf: u64,
    overflow: u64,
    entries: u64,
}

/// How much a walk does.
#[derive(Debug, Clone, Copy)]
pub struct WalkOptions {
    /// Stop after this many problems (1 at open).
    pub max_problems: usize,
    /// Also decode every stored row (a full verify).
    pub rows: bool,
}

struct Walker<'f> {
    file: &'f File,
    page_size: usize,
    file_pages: u64,
    last_page: u64,
    txnid: u64,
    /// One bit per page of the file: reached already (by a tree, an
    /// overflow run or a free list). Sized by the file, not by the meta's
    /// last page, which damage can make huge.
    seen: Vec<u64>,
    /// Free-listed pages past the end of the file (LMDB frees pages it
    /// never wrote); only free lists can reach there.
    seen_past_end: std::collections::HashSet<u64>,
    options: WalkOptions,
    problems: Vec<Damage>,
    free_pages: u64,
    buf: Vec<u8>,
}

/// A key bound from a parent page, compared as the tree compares keys;
/// None is open.
type Bound = Option<Vec<u8>>;

/// A page to check and where it sits: its tree, level (the root is 1) in
/// a tree of `depth` levels, and the key range its parent gives it.
#[derive(Clone, Copy)]
struct Place<'b> {
    tree: Tree,
    page: u64,
    level: u16,
    depth: u16,
    low: &'b Bound,
    high: &'b Bound,
}

impl Walker<'_> {
    fn full(&self) -> bool {
        self.problems.len() >= self.options.max_problems
    }

    fn report(&mut self, d: Damage) {
        if !self.full() {
            self.problems.push(d);
        }
    }

    /// Marks `count` pages from `first` as reached; false (with the damage
    /// reported) when one is out of range or reached before.
    fn claim(&mut self, first: u64, count: u64, in_file: bool, what: &str) -> bool {
        let Some(end) = first.checked_add(count) else {
            self.report(damage(
                Some(first),
                DamageKind::PageNumber,
                format!("{what}: page run overflows"),
            ));
            return false;
        };
        if first < NUM_METAS || end - 1 > self.last_page {
            self.report(damage(
                Some(first),
                DamageKind::PageNumber,
                format!(
                    "{what}: pages {first}..{end} are outside the database's pages 2..={}",
                    self.last_page
                ),
            ));
            return false;
        }
        if in_file && end > self.file_pages {
            self.report(damage(
                Some(first),
                DamageKind::Truncated,
                format!(
                    "{what}: the file holds {} pages, so page {} is missing (truncated file)",
                    self.file_pages,
                    end - 1
                ),
            ));
            return false;
        }
        for page in first..end {
            let fresh = if page / 64 < self.seen.len() as u64 {
                let (word, bit) = ((page / 64) as usize, 1u64 << (page % 64));
                let fresh = self.seen[word] & bit == 0;
                self.seen[word] |= bit;
                fresh
            } else {
                self.seen_past_end.insert(page)
            };
            if !fresh {
                self.report(damage(
                    Some(page),
                    DamageKind::PageNumber,
                    format!(
                        "{what}: page {page} is reached twice (a cycle or a page in two places)"
                    ),
                ));
                return false;
            }
        }
        true
    }

    fn read_page(&mut self, page: u64) -> Result<Vec<u8>, Damage> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(self.page_size, 0);
        let result = read_at(
            self.file,
            &mut buf,
            page * self.page_size as u64,
            Some(page),
        );
        match result {
            Ok(()) => Ok(buf),
            Err(d) => {
                self.buf = buf;
                Err(d)
            }
        }
    }

    fn compare(tree: Tree, a: &[u8], b: &[u8]) -> Ordering {
        match tree {
            Tree::Main => a.cmp(b),
            // MDB_INTEGERKEY: native-endian size_t keys (lengths are
            // checked to be 8 before any comparison).
            Tree::Free => u64_at(a, 0).cmp(&u64_at(b, 0)),
        }
    }

    /// Reads a value stored on an overflow run starting at `page`.
    fn overflow(
        &mut self,
        tree: Tree,
        leaf: u64,
        page: u64,
        size: u64,
        counts: &mut Counts,
    ) -> Option<Vec<u8>> {
        let ps = self.page_size as u64;
        let needed = (PAGE_HEADER as u64 - 1 + size) / ps + 1;
        if page < NUM_METAS || page > self.last_page || page >= self.file_pages {
            self.report(damage(
                Some(leaf),
                DamageKind::PageNumber,
                format!("a value's overflow page {page} is outside the file's pages"),
            ));
            return None;
        }
        let mut header = [0u8; PAGE_HEADER];
        if let Err(d) = read_at(self.file, &mut header, page * ps, Some(page)) {
            self.report(d);
            return None;
        }
        let flags = u16_at(&header, 10);
        let pages = u64::from(u32_at(&header, 12));
        if u64_at(&header, 0) != page || flags != P_OVERFLOW || pages < needed {
            self.report(damage(
                Some(page),
                DamageKind::PageHeader,
                format!(
                    "not the overflow run of a {size}-byte value (number {}, flags 0x{flags:04x}, \
                     {pages} pages for {needed} needed)",
                    u64_at(&header, 0)
                ),
            ));
            return None;
        }
        if !self.claim(page, pages, true, "overflow run") {
            return None;
        }
        counts.overflow += pages;
        if tree == Tree::Main && !self.options.rows {
            return Some(Vec::new());
        }
        let mut value = vec![0u8; usize::try_from(size).ok()?];
        if let Err(d) = read_at(
            self.file,
            &mut value,
            page * ps + PAGE_HEADER as u64,
            Some(page),
        ) {
            self.report(d);
            return None;
        }
        Some(value)
    }

    fn visit(&mut self, at: Place<'_>, counts: &mut Counts) {
        if self.full() || !self.claim(at.page, 1, true, "tree page") {
            return;
        }
        let buf = match self.read_page(at.page) {
            Ok(buf) => buf,
            Err(d) => return self.report(d),
        };
        let children = self.check_page(&at, &buf, counts);
        self.buf = buf;
        for (child, low, high) in children {
            let below = Place {
                page: child,
                level: at.level + 1,
                low: &low,
                high: &high,
                ..at
            };
            self.visit(below, counts);
        }
    }

    /// Checks one tree page; returns its children with their key bounds.
    fn check_page(
        &mut self,
        at: &Place<'_>,
        buf: &[u8],
        counts: &mut Counts,
    ) -> Vec<(u64, Bound, Bound)> {
        let Place {
            tree,
            page,
            level,
            depth,
            low,
            high,
        } = *at;
        let here = Some(page);
        let ps = self.page_size;
        let number = u64_at(buf, 0);
        let flags = u16_at(buf, 10);
        let lower = usize::from(u16_at(buf, 12));
        let upper = usize::from(u16_at(buf, 14));
        let bad = |kind, detail: String| damage(here, kind, detail);
        if number != page {
            self.report(bad(
                DamageKind::PageHeader,
                format!("the page says it is page {number}"),
            ));
            return Vec::new();
        }
        let is_leaf = match flags {
            P_LEAF => true,
            P_BRANCH => false,
            _ => {
                self.report(bad(
                    DamageKind::PageHeader,
                    format!("flags 0x{flags:04x}: neither a branch nor a leaf page"),
                ));
                return Vec::new();
            }
        };
        if is_leaf != (level == depth) {
            self.report(bad(
                DamageKind::TreeShape,
                format!(
                    "a {} at level {level} of a tree of depth {depth}",
                    if is_leaf { "leaf" } else { "branch" }
                ),
            ));
            return Vec::new();
        }
        if lower < PAGE_HEADER
            || lower > upper
            || upper > ps
            || !(lower - PAGE_HEADER).is_multiple_of(2)
            || !upper.is_multiple_of(2)
        {
            self.report(bad(
                DamageKind::PageHeader,
                format!("free-space bounds {lower}..{upper} do not fit a {ps}-byte page"),
            ));
            return Vec::new();
        }
        let keys = (lower - PAGE_HEADER) / 2;
        // LMDB asserts that a branch has two children (mdb_rebalance, for
        // every tree; the free tree has one only in the middle of a
        // rebalance, never in a commit).
        let min_keys = if is_leaf { 1 } else { 2 };
        if keys < min_keys {
            self.report(bad(
                DamageKind::TreeShape,
                format!("{keys} nodes; a page of this kind has at least {min_keys}"),
            ));
            return Vec::new();
        }
        if is_leaf {
            counts.leaf += 1;
            counts.entries += keys as u64;
        } else {
            counts.branch += 1;
        }

        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(keys);
        let mut children = Vec::new();
        let mut previous: Option<&[u8]> = None;
        for i in 0..keys {
            let at = usize::from(u16_at(buf, PAGE_HEADER + 2 * i));
            // Nodes are 2-byte aligned: LMDB asserts it when it moves one.
            if at < upper || at + NODE_HEADER > ps || !at.is_multiple_of(2) {
                self.report(bad(
                    DamageKind::NodeBounds,
                    format!("node {i} at offset {at} is outside the node area {upper}..{ps}"),
                ));
                return Vec::new();
            }
            let lo = u64::from(u16_at(buf, at));
            let hi = u64::from(u16_at(buf, at + 2));
            let node_flags = u16_at(buf, at + 4);
            let key_size = usize::from(u16_at(buf, at + 6));
            let key_start = at + NODE_HEADER;
            let key_end = key_start + key_size;
            if key_end > ps {
                self.report(bad(
                    DamageKind::NodeBounds,
                    format!("node {i}: its {key_size}-byte key runs past the page"),
                ));
                return Vec::new();
            }
            let key = &buf[key_start..key_end];
            let data_size = lo | (hi << 16);
            let end = if is_leaf {
                if node_flags & (F_SUBDATA | F_DUPDATA) != 0 || node_flags & !F_BIGDATA != 0 {
                    self.report(bad(
                        DamageKind::NodeBounds,
                        format!(
                            "node {i}: flags 0x{node_flags:04x} (sub-databases and duplicates are \
                             not part of a registry)"
                        ),
                    ));
                    return Vec::new();
                }
                let inline = if node_flags & F_BIGDATA != 0 {
                    8
                } else {
                    data_size
                };
                let end = key_end as u64 + inline;
                if end > ps as u64 {
                    self.report(bad(
                        DamageKind::NodeBounds,
                        format!("node {i}: its {data_size}-byte value runs past the page"),
                    ));
                    return Vec::new();
                }
                end as usize
            } else {
                key_end
            };
            spans.push((at, end));

            // Keys: in order, within the parent's bounds. A branch's
            // first key is not used by LMDB (its child's low bound is the
            // parent's).
            let ordered = !is_leaf && i == 0 || {
                if tree == Tree::Free && key.len() != 8 {
                    self.report(bad(
                        DamageKind::FreeList,
                        format!("node {i}: a free-list key of {} bytes, not 8", key.len()),
                    ));
                    return Vec::new();
                }
                let after_previous =
                    previous.is_none_or(|p| Self::compare(tree, p, key) == Ordering::Less);
                let above_low = low
                    .as_deref()
                    .is_none_or(|l| Self::compare(tree, l, key) != Ordering::Greater);
                let below_high = high
                    .as_deref()
                    .is_none_or(|h| Self::compare(tree, key, h) == Ordering::Less);
                after_previous && above_low && below_high
            };
            if !ordered {
                self.report(bad(
                    DamageKind::KeyOrder,
                    format!("node {i}: its key is out of order"),
                ));
                return Vec::new();
            }
            if is_leaf || i > 0 {
                previous = Some(key);
            }

            if is_leaf {
                let value = if node_flags & F_BIGDATA != 0 {
                    let first = u64_at(buf, key_end);
                    match self.overflow(tree, page, first, data_size, counts) {
                        Some(v) => v,
                        None => return Vec::new(),
                    }
                } else {
                    buf[key_end..end].to_vec()
                };
                match tree {
                    Tree::Free => self.free_list(page, key, &value),
                    Tree::Main if self.options.rows => self.check_row(page, key, &value),
                    Tree::Main => {}
                }
            } else {
                let child = lo | (hi << 16) | (u64::from(node_flags) << 32);
                children.push(child);
            }
        }
        spans.sort_unstable();
        if let Some(w) = spans.windows(2).find(|w| w[0].1 > w[1].0) {
            self.report(bad(
                DamageKind::NodeBounds,
                format!("nodes at offsets {} and {} overlap", w[0].0, w[1].0),
            ));
            return Vec::new();
        }
        if is_leaf {
            return Vec::new();
        }
        // Child i holds keys from key i (the parent's low bound for i = 0)
        // up to, not including, key i + 1 (the parent's high bound last).
        let key_of = |i: usize| -> Vec<u8> {
            let at = usize::from(u16_at(buf, PAGE_HEADER + 2 * i));
            let size = usize::from(u16_at(buf, at + 6));
            buf[at + NODE_HEADER..at + NODE_HEADER + size].to_vec()
        };
        (0..children.len())
            .map(|i| {
                let child_low = if i == 0 { low.clone() } else { Some(key_of(i)) };
                let child_high = if i + 1 < children.len() {
                    Some(key_of(i + 1))
                } else {
                    high.clone()
                };
                (children[i], child_low, child_high)
            })
            .collect()
    }

    /// A free-list record: a count, then that many page numbers.
    fn free_list(&mut self, leaf: u64, key: &[u8], value: &[u8]) {
        let malformed = |detail: String| damage(Some(leaf), DamageKind::FreeList, detail);
        // Keyed by the transaction that freed the pages: one that has
        // committed, so at most this snapshot's.
        let freed_by = u64_at(key, 0);
        if freed_by == 0 || freed_by > self.txnid {
            return self.report(malformed(format!(
                "a free list of transaction {freed_by}, in a snapshot of transaction {}",
                self.txnid
            )));
        }
        if value.len() < 8 || !value.len().is_multiple_of(8) {
            return self.report(malformed(format!(
                "a free list of {} bytes, not a whole number of page numbers",
                value.len()
            )));
        }
        let count = u64_at(value, 0);
        // LMDB reads only the count; a record may have room to spare
        // (mdb_freelist_save reserves before it fills).
        let used = count.checked_add(1).and_then(|n| n.checked_mul(8));
        if used.is_none_or(|used| used > value.len() as u64) {
            return self.report(malformed(format!(
                "a free list claims {count} pages in {} bytes",
                value.len()
            )));
        }
        let mut previous = u64::MAX;
        for at in (8..8 + 8 * count as usize).step_by(8) {
            let page = u64_at(value, at);
            // LMDB merges free lists and finds runs of free pages assuming
            // each list is strictly descending; an unsorted one could make
            // it hand out a page that is in use.
            if page >= previous {
                return self.report(malformed(format!(
                    "a free list is not in descending order (page {page} after {previous})"
                )));
            }
            previous = page;
            // A free page past the end of the file is normal: LMDB frees
            // pages it never wrote.
            if !self.claim(page, 1, false, "free list") {
                return;
            }
            self.free_pages += 1;
        }
    }

    fn check_row(&mut self, leaf: u64, key: &[u8], value: &[u8]) {
        let problem = if key == APPLIED_INDEX_KEY {
            (value.len() != 8).then(|| format!("the applied index is {} bytes, not 8", value.len()))
        } else if key.starts_with(REGISTRY_PREFIX) {
            decode_row(key, value).err().map(|e| e.to_string())
        } else {
            Some(format!(
                "a key outside the registry's layout ({} bytes)",
                key.len()
            ))
        };
        if let Some(detail) = problem {
            self.report(damage(Some(leaf), DamageKind::Row, detail));
        }
    }

    fn tree(&mut self, tree: Tree, db: &DbRecord) -> Counts {
        let mut counts = Counts::default();
        let name = match tree {
            Tree::Main => "main",
            Tree::Free => "free-page",
        };
        if db.root == P_INVALID {
            if db.depth != 0 || db.entries != 0 {
                self.report(damage(
                    None,
                    DamageKind::Counts,
                    format!(
                        "the {name} database has no root but claims {} entries",
                        db.entries
                    ),
                ));
            }
            return counts;
        }
        if db.depth == 0 {
            self.report(damage(
                None,
                DamageKind::Meta,
                format!("the {name} database has a root but depth 0"),
            ));
            return counts;
        }
        let root = Place {
            tree,
            page: db.root,
            level: 1,
            depth: db.depth,
            low: &None,
            high: &None,
        };
        self.visit(root, &mut counts);
        if self.problems.is_empty() {
            let found = (counts.branch, counts.leaf, counts.overflow, counts.entries);
            let claimed = (
                db.branch_pages,
                db.leaf_pages,
                db.overflow_pages,
                db.entries,
            );
            if found != claimed {
                self.report(damage(
                    None,
                    DamageKind::Counts,
                    format!(
                        "the {name} database has (branch, leaf, overflow pages, entries) = \
                         {found:?}, the meta says {claimed:?}"
                    ),
                ));
            }
        }
        counts
    }
}

/// Walks the snapshot of `meta` in `file`. The caller pins that snapshot
/// (a read transaction at `meta.txnid`), so LMDB reuses none of its pages
/// during the walk.
pub fn walk(file: &File, meta: &Meta, options: WalkOptions) -> VerifyReport {
    let page_size = meta.page_size as usize;
    // Without the file's size every page would look missing: say so
    // instead of reporting a truncation.
    let file_len = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => {
            return VerifyReport {
                txnid: meta.txnid,
                page_size: meta.page_size,
                last_page: meta.last_page,
                problems: vec![damage(
                    None,
                    DamageKind::Io,
                    format!("cannot stat data.mdb: {e}"),
                )],
                ..VerifyReport::default()
            }
        }
    };
    let file_pages = file_len / page_size as u64;
    let mut walker = Walker {
        file,
        page_size,
        file_pages,
        last_page: meta.last_page,
        txnid: meta.txnid,
        // Sized by what can be in use: pages past the file's end are
        // refused, and past the last page too (a sparse file can be huge).
        seen: vec![0; usize::try_from(file_pages.min(meta.last_page + 1) / 64 + 1).unwrap_or(0)],
        seen_past_end: std::collections::HashSet::new(),
        options: WalkOptions {
            max_problems: options.max_problems.max(1),
            ..options
        },
        problems: Vec::new(),
        free_pages: 0,
        buf: Vec::with_capacity(page_size),
    };
    let main = walker.tree(Tree::Main, &meta.main);
    if !walker.full() {
        let free = walker.tree(Tree::Free, &meta.free);
        // Every page LMDB has allocated is a meta, in a tree, or free (its
        // own audit, mdb_audit); a last page damaged upwards fails this.
        let accounted = NUM_METAS
            + [&main, &free]
                .iter()
                .map(|c| c.branch + c.leaf + c.overflow)
                .sum::<u64>()
            + walker.free_pages;
        if walker.problems.is_empty() && accounted != meta.last_page + 1 {
            walker.report(damage(
                Some(meta.slot),
                DamageKind::Counts,
                format!(
                    "{accounted} pages are metas, in a tree or free, but the meta's last page is \
                     {} ({} pages)",
                    meta.last_page,
                    meta.last_page + 1
                ),
            ));
        }
    }
    VerifyReport {
        txnid: meta.txnid,
        page_size: meta.page_size,
        file_pages,
        last_page: meta.last_page,
        depth: meta.main.depth,
        entries: main.entries,
        branch_pages: main.branch,
        leaf_pages: main.leaf,
        overflow_pages: main.overflow,
        free_pages: walker.free_pages,
        problems: walker.problems,
        warnings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::applier::Applier;
    use crate::store::verify_path;
    use crate::test_support::{fresh_path, ScratchPath};
    use crate::wire::Registration;
    use std::fs::OpenOptions;

    const FULL: WalkOptions = WalkOptions {
        max_problems: 100,
        rows: true,
    };

    /// A registry of `rows` rows over enough commits to have a branch
    /// level and a free-page tree.
    fn registry(tag: &str, rows: u32) -> ScratchPath {
        let dir = fresh_path(tag);
        let mut applier = Applier::open(&dir).expect("open");
        applier.set_durable(false).expect("nosync");
        for i in 0..rows {
            let reg = Registration {
                dek_id: 1 + i / 1000,
                full_node_id: u64::from(i % 1000) << 16 | u64::from(i % 1000),
                local_epoch: 1,
            };
            applier.apply_registration(&reg).expect("apply");
        }
        dir
    }

    #[test]
    fn never_committed_is_a_creation_no_commit_completed_and_nothing_else() {
        // LMDB's own bytes: a created environment (two initial metas) and
        // one after a single commit.
        let fresh = registry("never-fresh", 0);
        let initial = std::fs::read(fresh.join("data.mdb")).expect("read");
        assert_eq!(initial.len(), 8192);
        let committed_dir = registry("never-committed", 1);
        let committed = std::fs::read(committed_dir.join("data.mdb")).expect("read");
        let scratch = crate::test_support::fresh_dir("never");
        let path = scratch.join("data.mdb");
        let classify = |bytes: &[u8]| {
            std::fs::write(&path, bytes).expect("write");
            never_committed(&open_data_file(&path).expect("open")).expect("classify")
        };
        let zeros = |n: usize| vec![0u8; n];
        let cases: [(&str, Vec<u8>, bool); 9] = [
            ("empty: LMDB initialises it", Vec::new(), false),
            ("both initial metas: LMDB opens it", initial.clone(), false),
            (
                "second meta blank",
                [&initial[..4096], &zeros(4096)].concat(),
                true,
            ),
            (
                "first meta blank",
                [&zeros(4096), &initial[4096..]].concat(),
                true,
            ),
            ("only the first page", initial[..4096].to_vec(), true),
            ("all zero", zeros(8192), true),
            ("a committed registry", committed.clone(), false),
            (
                "its commit's meta zeroed",
                [&committed[..4096], &zeros(4096), &committed[8192..]].concat(),
                false,
            ),
            ("truncated to its metas", committed[..8192].to_vec(), false),
        ];
        for (name, bytes, expected) in cases {
            assert_eq!(classify(&bytes), expected, "{name}");
        }
    }

    fn header(dir: &Path) -> Meta {
        read_header(&open_data_file(&dir.join("data.mdb")).expect("open")).expect("header")
    }

    fn patch(dir: &Path, offset: u64, bytes: &[u8]) {
        let file = OpenOptions::new()
            .write(true)
            .open(dir.join("data.mdb"))
            .expect("open");
        file.write_all_at(bytes, offset).expect("write");
    }

    #[test]
    fn a_healthy_registry_verifies_with_exact_counts() {
        let dir = registry("verify-ok", 3000);
        let report = verify_path(&dir, FULL).expect("verify");
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.entries, 3000);
        assert!(report.depth >= 2 && report.branch_pages >= 1, "{report:?}");
        assert!(report.free_pages > 0, "{report:?}");
        Applier::open(&dir).expect("reopens");
    }

    #[test]
    fn a_truncated_file_is_refused_at_open_and_reported() {
        let dir = registry("verify-trunc", 3000);
        let file = OpenOptions::new()
            .write(true)
            .open(dir.join("data.mdb"))
            .expect("open");
        let len = file.metadata().expect("stat").len();
        file.set_len(len / 2).expect("truncate");
        let err = Applier::open(&dir).expect_err("damaged");
        assert!(err.to_string().contains("truncated"), "{err}");
        let report = verify_path(&dir, FULL).expect("verify");
        assert_eq!(report.problems[0].kind, DamageKind::Truncated, "{report:?}");
    }

    #[test]
    fn a_zeroed_root_page_is_refused() {
        let dir = registry("verify-zero", 3000);
        let meta = header(&dir);
        let ps = u64::from(meta.page_size);
        patch(&dir, meta.main.root * ps, &vec![0u8; ps as usize]);
        let err = Applier::open(&dir).expect_err("damaged");
        assert!(err.to_string().contains("page_header"), "{err}");
    }

    #[test]
    fn foreign_database_flags_are_refused_by_name() {
        for (flag, name) in [
            (0x04u16, "MDB_DUPSORT"),
            (0x02, "MDB_REVERSEKEY"),
            (0x08, "MDB_INTEGERKEY"),
        ] {
            let dir = registry("verify-flags", 10);
            let ps = u64::from(header(&dir).page_size);
            for slot in 0..2 {
                // main database record: page header + meta offset 72, flags at +4
                patch(&dir, slot * ps + 16 + 72 + 4, &flag.to_ne_bytes());
            }
            let err = Applier::open(&dir).expect_err("flags");
            assert!(err.to_string().contains(name), "{err}");
            let crate::error::ApplierOpenError::Open(open) = err else {
                panic!("not an open error: {err}")
            };
            assert_eq!(open.damage.expect("damage").kind, DamageKind::DbFlags);
            assert!(crate::view::Registry::open(&dir).is_err());
        }
    }
}
