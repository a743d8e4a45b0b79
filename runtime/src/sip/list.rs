//! Splitting comma-separated header values (Via, Route, Record-Route,
//! Contact...) into elements, respecting quoted strings and `<...>`
//! (RFC 3261 §7.3.1).

use super::lex::{quoted_end, trim_span};

/// Iterator returned by [`split_list`].
#[derive(Clone, Debug)]
pub struct SplitList<'a> {
    s: &'a str,
    pos: usize,
}

/// Split a comma-separated header value into elements, respecting quotes
/// and `<...>`; yields `(offset within s, element trimmed)`. Empty elements
/// (",,", a trailing ",") are skipped.
pub fn split_list(s: &str) -> SplitList<'_> {
    SplitList { s, pos: 0 }
}

impl<'a> Iterator for SplitList<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<(usize, &'a str)> {
        let b = self.s.as_bytes();
        while self.pos <= b.len() {
            let start = self.pos;
            let mut i = start;
            let mut angle = 0usize;
            while let Some(&c) = b.get(i) {
                match c {
                    b'"' => {
                        i = quoted_end(b, i).unwrap_or(b.len());
                        continue;
                    }
                    b'<' => angle += 1,
                    b'>' => angle = angle.saturating_sub(1),
                    b',' if angle == 0 => break,
                    _ => {}
                }
                i += 1;
            }
            let end = i.min(b.len());
            self.pos = end + 1;
            let (ts, te) = trim_span(b, start, end);
            if ts < te {
                return Some((ts, self.s.get(ts..te)?));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(s: &str) -> Vec<(usize, &str)> {
        split_list(s).collect()
    }

    #[test]
    fn plain_and_quoted() {
        assert_eq!(items("a, b ,c"), vec![(0, "a"), (3, "b"), (6, "c")]);
        assert_eq!(
            items("\"Bell, Alexander\" <sip:a@b>, <sip:c@d;x=\"1,2\">"),
            vec![
                (0, "\"Bell, Alexander\" <sip:a@b>"),
                (29, "<sip:c@d;x=\"1,2\">")
            ]
        );
        assert_eq!(
            items("<sip:a,b@c>,<sip:d>"),
            vec![(0, "<sip:a,b@c>"), (12, "<sip:d>")]
        );
        assert_eq!(items("\"a\\\",b\", c"), vec![(0, "\"a\\\",b\""), (9, "c")]);
    }

    #[test]
    fn empties_and_edges() {
        assert!(items("").is_empty());
        assert!(items(" , ,, ").is_empty());
        assert_eq!(items("x;;,;,,"), vec![(0, "x;;"), (4, ";")]);
        assert_eq!(items("\"unterminated, x"), vec![(0, "\"unterminated, x")]);
        assert_eq!(items("a,\r\n b"), vec![(0, "a"), (5, "b")]);
    }
}
