//! One raw-deflate compressor (zlib-rs, safe Rust): bytes in, deflate
//! output out, each call ending on a byte boundary (a sync flush), so what
//! it returns decodes as soon as it arrives.
//!
//! Why zlib-rs: measured on the demo feed (163-byte quotes,
//! `/tmp`-style bench recorded in `benches/results/compression/`), it
//! compresses a quote with a sync flush in 0.6 µs where C zlib at the same
//! level takes 5-7 µs (zlib-rs's level 1 uses static Huffman codes for
//! small blocks and skips building trees); the price is a fixed 128 KiB
//! hash table per compressor, which is why compressors are shared per
//! topic where subscribers see the same bytes (`group`) and held only
//! while a stream is busy elsewhere.

use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Status};

/// The LZ77 window, in bits: 4 KiB of history, about 25 quotes back.
pub(crate) const WINDOW_BITS: i32 = 12;

/// Bytes one compressor holds (the fixed hash table, the window and its
/// chain, the pending buffers at memory level 1), for the memory budget.
pub(crate) const DEFLATER_BYTES: usize = 128 * 1024 + (4 << WINDOW_BITS) + 8 * 1024;

/// A raw-deflate compressor.
pub struct Deflater {
    inner: Deflate,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").finish_non_exhaustive()
    }
}

impl Deflater {
    /// A compressor at `level` (1..=9).
    pub fn new(level: u32) -> Self {
        let config = DeflateConfig {
            level: level as i32,
            // Negative: raw deflate, no zlib header (gzip frames it).
            window_bits: -WINDOW_BITS,
            mem_level: 1,
            ..DeflateConfig::default()
        };
        Deflater {
            inner: Deflate::new_with_config(config),
        }
    }

    /// Starts afresh — the output refers to nothing before it but
    /// `dictionary`, the plaintext the decoder produced last — then
    /// compresses `input` into `out` with a sync flush. Raw deflate may
    /// begin a new stream on any byte boundary of an old one, so this
    /// continues whatever body came before.
    pub fn compress_after(&mut self, dictionary: &[u8], input: &[u8], out: &mut Vec<u8>) {
        self.inner.reset();
        if !dictionary.is_empty() {
            if let Err(e) = self.inner.set_dictionary(dictionary) {
                // Only an inconsistent state refuses one; then the output
                // refers to nothing, which is still correct.
                tracing::error!(error = e.as_str(), "deflate dictionary refused");
                self.inner.reset();
            }
        }
        self.compress(input, out, false);
    }

    /// Compresses `input` and appends the output to `out`, ending with a
    /// sync flush (`full`: a full flush, after which later output refers
    /// to nothing before it).
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>, full: bool) {
        let flush = if full {
            DeflateFlush::FullFlush
        } else {
            DeflateFlush::SyncFlush
        };
        let mut input = input;
        loop {
            // Room for the input at worst stored, plus block headers (only
            // that much is zeroed, not the buffer's whole capacity).
            let room = input.len() + input.len() / 64 + 64;
            let start = out.len();
            out.resize(start + room, 0);
            let before_in = self.inner.total_in();
            let before_out = self.inner.total_out();
            let status = self.inner.compress(input, &mut out[start..], flush);
            let took = (self.inner.total_in() - before_in) as usize;
            let wrote = (self.inner.total_out() - before_out) as usize;
            out.truncate(start + wrote);
            input = &input[took..];
            match status {
                // All input taken and the flush done when room was left.
                Ok(Status::Ok) | Ok(Status::BufError) if input.is_empty() && wrote < room => return,
                Ok(_) => {}
                Err(e) => {
                    // A stream error here is a bug (the state is only ever
                    // used this way); leave the stream as it is rather than
                    // panicking a worker.
                    tracing::error!(error = e.as_str(), "deflate failed");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Inflates raw deflate with zlib-rs's own decoder.
    pub(crate) fn inflate(data: &[u8]) -> Vec<u8> {
        let mut inf = zlib_rs::Inflate::new(false, 15);
        let mut out = vec![0u8; 1 << 20];
        let mut n = 0;
        let mut input = data;
        loop {
            let before_in = inf.total_in();
            let before_out = inf.total_out();
            let r = inf.decompress(input, &mut out[n..], zlib_rs::InflateFlush::SyncFlush);
            input = &input[(inf.total_in() - before_in) as usize..];
            n += (inf.total_out() - before_out) as usize;
            match r {
                Ok(_) if input.is_empty() => break,
                Ok(_) => {}
                Err(e) => panic!("inflate: {e:?}"),
            }
        }
        out.truncate(n);
        out
    }

    #[test]
    fn each_call_decodes_whole_and_later_calls_refer_back() {
        let mut d = Deflater::new(1);
        let quote = br#"{"symbol":"AAPL","bid":189.12,"ask":189.14}"#;
        let mut out = Vec::new();
        d.compress(quote, &mut out, false);
        let first = out.len();
        assert_eq!(inflate(&out), quote, "the first call decodes alone");
        d.compress(quote, &mut out, false);
        assert!(
            out.len() - first < first / 2,
            "the second refers back to the first"
        );
        let mut twice = quote.to_vec();
        twice.extend_from_slice(quote);
        assert_eq!(inflate(&out), twice);
        // Large input, several rounds of output room.
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        Deflater::new(1).compress(&big, &mut out, true);
        assert_eq!(inflate(&out), big);
    }
}
