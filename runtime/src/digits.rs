//! Decimal numbers as text without an allocation or the formatter (the
//! per-message paths write a few of them: Max-Forwards, log lines).

/// `n` in decimal, written at the end of `buf`; returns the digits.
pub fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Append `n` in decimal to `out`, zero-padded to at least `width` digits
/// (at most 10).
pub fn push_padded(out: &mut Vec<u8>, n: u32, width: usize) {
    // The digits go at the end of a buffer of zeros: the padding is the
    // zeros in front of them.
    let mut buf = [b'0'; 10];
    let digits = decimal(n, &mut buf).len();
    let from = (buf.len() - digits).min(buf.len() - width.min(10));
    out.extend_from_slice(&buf[from..]);
}

/// Append `n` in decimal to `out`, as `n.to_string()` writes it.
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &buf[i..] {
        out.push(char::from(d));
    }
}

/// Append `n` (below 100) as two digits (`07`), as `format!("{n:02}")`.
pub fn push_2(out: &mut String, n: u64) {
    let n = n % 100;
    out.push(char::from(b'0' + (n / 10) as u8));
    out.push(char::from(b'0' + (n % 10) as u8));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_as_to_string() {
        let mut cases = vec![0, 1, 9, 10, 99, 100, 3600, u64::MAX, u64::MAX - 1];
        cases.extend((0..64).map(|k| 1u64 << k));
        cases.extend((0..20).map(|k| 10u64.pow(k)));
        cases.extend((1..20).map(|k| 10u64.pow(k) - 1));
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..1000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            cases.push(x >> (x % 64));
        }
        for n in cases {
            let mut out = String::from("x");
            push_u64(&mut out, n);
            assert_eq!(out, format!("x{n}"));
        }
        for n in 0..100 {
            let mut out = String::new();
            push_2(&mut out, n);
            assert_eq!(out, format!("{n:02}"));
        }
    }

    #[test]
    fn numbers() {
        let mut buf = [0u8; 10];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(69, &mut buf), b"69");
        assert_eq!(decimal(u32::MAX, &mut buf), b"4294967295");
        let mut out = Vec::new();
        for (n, width) in [
            (0, 1),
            (7, 6),
            (123_456, 6),
            (42, 1),
            (u32::MAX, 1),
            (5, 3),
            (9, 0),
            (5, 12),
        ] {
            push_padded(&mut out, n, width);
            out.push(b' ');
        }
        assert_eq!(out, b"0 000007 123456 42 4294967295 005 9 0000000005 ");
    }
}
