//! Byte splicing: a list of non-overlapping edits (replace, insert, delete)
//! applied to the received buffer in one pass, so that everything the proxy
//! does not touch (unknown headers, bodies) passes byte-exact.

use std::ops::Range;

#[derive(Clone, Debug)]
struct Edit {
    range: Range<usize>,
    /// Replacement bytes, as a range into `Splice::data`.
    data: Range<usize>,
}

/// Edits to apply to a source buffer. Edits may be added in any order; they
/// are kept sorted by start offset, and edits with the same start keep the
/// order they were added in (so several inserts at one offset appear in
/// that order). Replacement bytes are stored in one shared buffer: a splice
/// costs two small allocations however many edits it holds.
///
/// Edits are expected not to overlap; if they do, `apply` still never
/// panics: source bytes are copied at most once, and every edit's bytes are
/// written. Offsets beyond the source are clamped to its end.
#[derive(Clone, Debug, Default)]
pub struct Splice {
    edits: Vec<Edit>,
    data: Vec<u8>,
}

impl Splice {
    pub fn new() -> Splice {
        Splice::default()
    }

    /// A splice with room for `edits` edits and `bytes` replacement bytes
    /// before it allocates again.
    pub fn with_capacity(edits: usize, bytes: usize) -> Splice {
        Splice {
            edits: Vec::with_capacity(edits),
            data: Vec::with_capacity(bytes),
        }
    }

    /// Replaces `range` of the source with `bytes`.
    pub fn replace(&mut self, range: Range<usize>, bytes: impl AsRef<[u8]>) {
        let bytes = bytes.as_ref();
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        let range = range.start..range.end.max(range.start);
        let at = self.edits.partition_point(|e| e.range.start <= range.start);
        self.edits.insert(
            at,
            Edit {
                range,
                data: start..self.data.len(),
            },
        );
    }

    /// Inserts `bytes` before source offset `at`.
    pub fn insert(&mut self, at: usize, bytes: impl AsRef<[u8]>) {
        self.replace(at..at, bytes);
    }

    /// Deletes `range` of the source.
    pub fn delete(&mut self, range: Range<usize>) {
        self.replace(range, []);
    }

    /// Number of edits.
    pub fn len(&self) -> usize {
        self.edits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// Removes all edits (keeps the allocations).
    pub fn clear(&mut self) {
        self.edits.clear();
        self.data.clear();
    }

    /// Appends `src` with the edits applied to `out`.
    pub fn apply(&self, src: &[u8], out: &mut Vec<u8>) {
        out.reserve(src.len() + self.data.len());
        let mut cur = 0;
        for e in &self.edits {
            let start = e.range.start.min(src.len());
            if start > cur {
                out.extend_from_slice(src.get(cur..start).unwrap_or(&[]));
                cur = start;
            }
            out.extend_from_slice(self.data.get(e.data.clone()).unwrap_or(&[]));
            cur = cur.max(e.range.end.min(src.len()));
        }
        out.extend_from_slice(src.get(cur..).unwrap_or(&[]));
    }

    /// `src` with the edits applied, in a new vector.
    pub fn to_vec(&self, src: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.apply(src, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_edits_is_identity() {
        let src = b"\x00\xffbinary\r\n";
        assert_eq!(Splice::new().to_vec(src), src);
    }

    #[test]
    fn ordering() {
        let src = b"0123456789";
        let mut s = Splice::new();
        s.insert(10, "!");
        s.replace(2..4, "ab");
        s.insert(5, "x");
        s.delete(7..9);
        s.insert(5, "y");
        s.insert(0, b"<");
        s.insert(5, String::from("z"));
        assert_eq!(s.len(), 7);
        assert_eq!(s.to_vec(src), b"<01ab4xyz569!");
    }

    #[test]
    fn same_start_keeps_added_order() {
        let src = b"abcdef";
        let mut s = Splice::new();
        s.insert(2, "I");
        s.replace(2..4, "R");
        assert_eq!(s.to_vec(src), b"abIRef");
        let mut s = Splice::new();
        s.replace(2..4, "R");
        s.insert(2, "I");
        assert_eq!(s.to_vec(src), b"abRIef");
    }

    #[test]
    fn overlapping_and_out_of_range_never_panic() {
        let src = b"abcdef";
        let mut s = Splice::new();
        s.delete(1..4);
        s.replace(2..5, "X");
        s.insert(100, "end");
        let (from, to) = (50, 40);
        s.delete(from..to);
        assert_eq!(s.to_vec(src), b"aXfend");
        s.clear();
        assert!(s.is_empty());
        assert_eq!(s.to_vec(src), src);
    }
}
