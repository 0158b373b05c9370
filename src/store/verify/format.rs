//! LMDB's on-disk format as this package reads it (mdb.c, LMDB 0.9.x,
//! 64-bit): page and meta constants, the meta pages, and the header checks
//! that must pass before LMDB maps the file ([`read_header`]). Positional
//! reads only, never through LMDB's map; see [`super`] for why.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::report::{damage, Damage, DamageKind};
use crate::fsutil::{open_for_reading, Follow};

/// LMDB's on-disk constants (mdb.c, 0.9.x, 64-bit).
pub(super) const PAGE_HEADER: usize = 16;
pub(super) const NODE_HEADER: usize = 8;
const META_SIZE: usize = 136;
const MDB_MAGIC: u32 = 0xBEEF_C0DE;
const MDB_DATA_VERSION: u32 = 1;
pub(super) const P_INVALID: u64 = u64::MAX;
pub(super) const P_BRANCH: u16 = 0x01;
pub(super) const P_LEAF: u16 = 0x02;
pub(super) const P_OVERFLOW: u16 = 0x04;
const P_META: u16 = 0x08;
pub(super) const F_BIGDATA: u16 = 0x01;
pub(super) const F_SUBDATA: u16 = 0x02;
pub(super) const F_DUPDATA: u16 = 0x04;
pub(super) const NUM_METAS: u64 = 2;
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

pub(super) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(super) fn u64_at(b: &[u8], at: usize) -> u64 {
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

pub(super) fn read_at(
    file: &File,
    buf: &mut [u8],
    offset: u64,
    page: Option<u64>,
) -> Result<(), Damage> {
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
