//! What a verify reports: the damage found, by stable kind, and the
//! figures of the snapshot walked.

use std::fmt;

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

/// How much a walk does.
#[derive(Debug, Clone, Copy)]
pub struct WalkOptions {
    /// Stop after this many problems (1 at open).
    pub max_problems: usize,
    /// Also decode every stored row (a full verify).
    pub rows: bool,
}
