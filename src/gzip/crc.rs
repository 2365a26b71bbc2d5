//! CRC-32 of a concatenation from the CRCs of its parts, for the gzip
//! trailer of a stream whose pieces are shared: a compressed segment sent
//! to many subscribers carries the CRC of its plaintext and an operator
//! that shifts a running CRC past that many bytes, both computed once; each
//! subscriber then combines its own running CRC in 32 steps, whatever the
//! segment's length.
//!
//! The math: for the reflected CRC-32 (polynomial 0xEDB88320, as gzip
//! uses), `crc(A ‖ B) = crc(A) · x^(8·|B|) mod P ⊕ crc(B)`, the pre- and
//! post-conditioning cancelling out. `x^(8n) mod P` is built from the
//! powers `x^(2^k) mod P` by the bits of `n`.

/// The CRC-32 polynomial, reflected.
const POLY: u32 = 0xEDB8_8320;

/// `a · b mod P`, in the reflected representation (the top bit is `x^0`).
fn mul_mod(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = 1u32 << 31;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
        }
        bit >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    product
}

/// `x^(2^k) mod P` for k = 0..32 (the cycle repeats after that).
const fn powers() -> [u32; 32] {
    let mut table = [0u32; 32];
    // x^1 in the reflected representation.
    let mut p: u32 = 1 << 30;
    let mut k = 0;
    while k < 32 {
        table[k] = p;
        // Square p: multiply it by itself (mul_mod, written out for const).
        let mut product = 0;
        let mut bit = 1u32 << 31;
        let mut b = p;
        while bit != 0 {
            if p & bit != 0 {
                product ^= b;
            }
            bit >>= 1;
            b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        }
        p = product;
        k += 1;
    }
    table
}

const POWERS: [u32; 32] = powers();

/// The operator that shifts a CRC past `len` more bytes: `x^(8·len) mod P`.
pub(crate) fn shift_op(len: u64) -> u32 {
    // x^0 = 1, the top bit in the reflected representation.
    let mut op = 1u32 << 31;
    // Bytes are 8 bits: start from x^(2^3).
    let mut k = 3;
    let mut n = len;
    while n != 0 {
        if n & 1 != 0 {
            op = mul_mod(POWERS[k % 32], op);
        }
        n >>= 1;
        k += 1;
    }
    op
}

/// The CRC of `A ‖ B` from `crc(A)`, `crc(B)` and `shift_op(|B|)`.
pub(crate) fn combine(crc_a: u32, crc_b: u32, op_b: u32) -> u32 {
    mul_mod(op_b, crc_a) ^ crc_b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combining_parts_gives_the_crc_of_the_whole() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for cut in [0usize, 1, 2, 7, 100, 1023, 4096, 4999, 5000] {
            let (a, b) = data.split_at(cut);
            let got = combine(
                crc32fast::hash(a),
                crc32fast::hash(b),
                shift_op(b.len() as u64),
            );
            assert_eq!(got, crc32fast::hash(&data), "cut at {cut}");
        }
        // Many small parts, as a stream of events.
        let mut running = crc32fast::hash(b"");
        for chunk in data.chunks(37) {
            running = combine(
                running,
                crc32fast::hash(chunk),
                shift_op(chunk.len() as u64),
            );
        }
        assert_eq!(running, crc32fast::hash(&data));
    }
}
