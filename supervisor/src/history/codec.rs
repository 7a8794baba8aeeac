//! The byte level of the history format: varints, frames and their checksums (see the spec in
//! [`super`]).

/// Opens every segment. The high first byte catches 7-bit mangling, the `\n` line-ending
/// mangling (as PNG's signature does); no frame can start with it (its kind byte would be `v`).
pub const MAGIC: [u8; 8] = *b"\x89svhist\n";
/// Format version written in each segment header.
pub const VERSION: u8 = 1;
/// Longest frame body accepted: bounds what a damaged length can make the reader allocate.
pub const MAX_FRAME: usize = 1 << 20;
/// Longest varint (a u64 in 7-bit groups).
pub const MAX_VARINT: usize = 10;

/// Frame kinds (the first byte of a body).
pub const KIND_HEADER: u8 = 1;
pub const KIND_NAME: u8 = 2;
pub const KIND_SLOT: u8 = 3;
pub const KIND_TICK: u8 = 4;
pub const KIND_LIMIT: u8 = 5;
pub const KIND_FINDINGS: u8 = 6;
pub const KIND_OWN_FINDINGS: u8 = 7;

/// Header flag: this segment continues the run of the one before (after a rotation or a write
/// error), so restart counts carry over instead of starting from zero.
pub const FLAG_CONTINUATION: u8 = 1;

/// Entry flags of a tick: which fields follow, in this order.
pub const F_PID: u8 = 1;
pub const F_STATE: u8 = 1 << 1;
pub const F_RSS: u8 = 1 << 2;
pub const F_PSS: u8 = 1 << 3;
pub const F_HEAP: u8 = 1 << 4;
pub const F_CPU: u8 = 1 << 5;
pub const F_REASONS: u8 = 1 << 6;
/// Bits a version-1 reader does not know: an entry using them is damage.
pub const F_UNKNOWN: u8 = 1 << 7;

/// Longest name written; longer ones are cut at a character boundary.
pub const MAX_NAME: usize = 1024;

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        // Truncation intended: the low 7 bits, with the continuation bit.
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Decodes a varint at the start of `b`: the value and its length; `Ok(None)` when `b` ends
/// inside it, `Err` when it is longer than a u64 can be.
pub fn get_varint(b: &[u8]) -> Result<Option<(u64, usize)>, Damage> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(MAX_VARINT) {
        let bits = u64::from(byte & 0x7f);
        if i == MAX_VARINT - 1 && byte > 1 {
            return Err(Damage);
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((v, i + 1)));
        }
    }
    if b.len() >= MAX_VARINT {
        Err(Damage)
    } else {
        Ok(None)
    }
}

/// Appends one frame (`len`, `body`, CRC-32C of `body`) to `out`.
pub fn put_frame(out: &mut Vec<u8>, body: &[u8]) {
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
    out.extend_from_slice(&crc32c(body).to_le_bytes());
}

/// Bytes that are not what the writer wrote: a torn tail, a damaged frame, or not history at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage;

/// Reads a frame body field by field; every read is bounds-checked.
pub struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Self { b, pos: 0 }
    }

    pub fn u8(&mut self) -> Result<u8, Damage> {
        let v = *self.b.get(self.pos).ok_or(Damage)?;
        self.pos += 1;
        Ok(v)
    }

    pub fn varint(&mut self) -> Result<u64, Damage> {
        let (v, n) = get_varint(&self.b[self.pos..])?.ok_or(Damage)?;
        self.pos += n;
        Ok(v)
    }

    pub fn u32(&mut self) -> Result<u32, Damage> {
        u32::try_from(self.varint()?).map_err(|_| Damage)
    }

    pub fn signed(&mut self) -> Result<i64, Damage> {
        self.varint().map(unzigzag)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Damage> {
        let end = self.pos.checked_add(n).ok_or(Damage)?;
        let s = self.b.get(self.pos..end).ok_or(Damage)?;
        self.pos = end;
        Ok(s)
    }

    pub fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    pub fn at_end(&self) -> bool {
        self.pos == self.b.len()
    }
}

/// CRC-32C (Castagnoli), bytewise with a table built at compile time: a frame is a few hundred
/// bytes a second, so speed does not matter and a dependency is not worth it.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// `s` cut to at most [`MAX_NAME`] bytes at a character boundary.
pub fn clip(s: &str) -> &str {
    if s.len() <= MAX_NAME {
        return s;
    }
    let mut end = MAX_NAME;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_overlong() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(get_varint(&b), Ok(Some((v, b.len()))));
            assert_eq!(get_varint(&b[..b.len() - 1]), Ok(None));
        }
        assert_eq!(get_varint(&[0xff; 11]), Err(Damage));
        // Ten bytes whose last one carries bits past 64.
        let mut b = vec![0xff; 9];
        b.push(0x02);
        assert_eq!(get_varint(&b), Err(Damage));
        for v in [0i64, 1, -1, 1000, -1000, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn clip_keeps_whole_characters() {
        let s = "é".repeat(MAX_NAME);
        let c = clip(&s);
        assert!(c.len() <= MAX_NAME && c.len() >= MAX_NAME - 1);
        assert_eq!(clip("api"), "api");
    }
}
